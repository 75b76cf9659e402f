"""Load a policy file: YAML → `Policy`, with every problem named by file, line and reason.

Example::

    try:
        policy = load_policy("policies/default.yaml")
    except PolicyError as exc:
        print(exc)   # policies/default.yaml:14: deployments.qwen.quality: must be at most 100 (got 120)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.catalog import enrich
from gateway.policy import Policy

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    where: str
    reason: str


class PolicyError(Exception):
    """A policy file that cannot be used; `problems` lists each with its line."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}:{p.line}: {p.where}: {p.reason}" for p in problems))


def load_policy(path: str | Path, *, today: dt.date | None = None) -> Policy:
    text = Path(path).read_text(encoding="utf-8")
    return parse_policy(text, str(path), today=today)


def parse_policy(text: str, file: str = "<policy>", *, today: dt.date | None = None) -> Policy:
    """Parse and validate policy text; raise PolicyError naming every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(file, [Problem(line, "YAML", f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict) or root is None:
        raise PolicyError(
            file, [Problem(1, "policy", "the file must be a mapping with version, providers, ...")]
        )
    lines = _line_index(root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = [_problem_from_pydantic(err, lines) for err in exc.errors()]
        raise PolicyError(file, problems) from None
    problems = [
        Problem(_line_of(lines, where), ".".join(map(str, where)), why) for where, why in cross_check(policy)
    ]
    if problems:
        raise PolicyError(file, problems)
    return enrich(policy, today=today)


def cross_check(policy: Policy) -> list[tuple[Path_, str]]:
    """References between sections, which one model alone cannot check."""
    return [
        *_check_deployments(policy),
        *_check_routes(policy),
        *_check_tenants(policy),
        *_check_providers(policy),
    ]


def _check_deployments(policy: Policy) -> list[tuple[Path_, str]]:
    return [
        (("deployments", name, "provider"), f"names provider {dep.provider!r}, which is not under providers")
        for name, dep in policy.deployments.items()
        if dep.provider not in policy.providers
    ]


def _check_routes(policy: Policy) -> list[tuple[Path_, str]]:
    found: list[tuple[Path_, str]] = []
    for name, route in policy.routes.items():
        modalities = set()
        for i, cand in enumerate(route.candidates):
            if cand not in policy.deployments:
                found.append(
                    (
                        ("routes", name, "candidates", i),
                        f"names deployment {cand!r}, which is not under deployments",
                    )
                )
            else:
                modalities.add(policy.deployments[cand].modality)
        if len(modalities) > 1:
            kinds = ", ".join(sorted(modalities))
            found.append(
                (("routes", name, "candidates"), f"mixes modalities ({kinds}); a route serves one modality")
            )
        if len(set(route.candidates)) != len(route.candidates):
            found.append((("routes", name, "candidates"), "lists a deployment twice"))
        for i, rule in enumerate(route.rules):
            for part in (rule.require, rule.prefer):
                named = getattr(part, "deployments", None) or frozenset()
                found.extend(
                    (
                        ("routes", name, "rules", i),
                        f"names deployment {missing!r}, which is not a candidate of this route",
                    )
                    for missing in sorted(named - set(route.candidates))
                )
    return found


def _check_tenants(policy: Policy) -> list[tuple[Path_, str]]:
    return [
        (("tenants", name, "routes"), f"names route {missing!r}, which is not under routes")
        for name, tenant in policy.tenants.items()
        for missing in sorted((tenant.routes or frozenset()) - set(policy.routes))
    ]


def _check_providers(policy: Policy) -> list[tuple[Path_, str]]:
    return [
        (("providers", name, "base_url"), "an openai_compatible provider needs base_url")
        for name, spec in policy.providers.items()
        if spec.kind == "openai_compatible" and not spec.base_url
    ]


def _line_index(node: yaml.Node, path: Path_ = ()) -> dict[Path_, int]:
    index: dict[Path_, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            index[sub] = key.start_mark.line + 1
            for p, line in _line_index(value, sub).items():
                index.setdefault(p, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*path, i)))
    return index


def _line_of(lines: dict[Path_, int], where: Path_) -> int:
    for cut in range(len(where), -1, -1):
        if where[:cut] in lines:
            return lines[where[:cut]]
    return 1


def _problem_from_pydantic(err: Any, lines: dict[Path_, int]) -> Problem:
    # pydantic adds the union member or validator name to `loc`; keep only parts present in the file.
    where: Path_ = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_schema_word(p))
    reason = _operator_words(err)
    return Problem(_line_of(lines, where), ".".join(map(str, where)) or "policy", reason)


def _is_schema_word(part: str) -> bool:
    return part.startswith(("function-", "literal[", "frozenset[", "tuple[", "list[", "dict[")) or part in {
        "str",
        "int",
        "float",
        "bool",
        "Requirement",
        "Strategy",
        "constrained-str",
    }


def _operator_words(err: Any) -> str:
    kind, got = err["type"], err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known setting (check the spelling; see the policy reference in README.md)"
    if kind == "enum":
        return f"must be one of {err['ctx']['expected']} (got {shown})"
    if kind == "literal_error":
        return f"must be {err['ctx']['expected']} (got {shown})"
    if kind in ("less_than_equal", "greater_than_equal", "greater_than", "less_than"):
        words = {
            "less_than_equal": "at most",
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than": "less than",
        }[kind]
        bound = next(iter(err["ctx"].values()))
        return f"must be {words} {bound} (got {shown})"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{message} (got {shown})"
