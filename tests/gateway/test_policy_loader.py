"""Invalid policies are refused naming file, line and reason in an operator's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy_loader import PolicyError, load_policy, parse_policy

GOOD = """\
version: 1
providers:
  local: {kind: openai_compatible, base_url: "http://127.0.0.1:8100/v1", usd_per_hour: 1}
deployments:
  small:
    provider: local
    model: m
    modality: chat
    openness: open
    data: {location: local}
    quality: 40
routes:
  chat:
    candidates: [small]
"""


def refused(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "ops.yaml")
    return str(caught.value)


def test_good_policy_loads_and_names_entries() -> None:
    policy = parse_policy(GOOD)
    assert policy.deployments["small"].name == "small"
    assert policy.routes["chat"].name == "chat"


def test_out_of_range_value_names_line_and_bound() -> None:
    message = refused(GOOD.replace("quality: 40", "quality: 140"))
    assert message == "ops.yaml:11: deployments.small.quality: must be at most 100 (got 140)"


def test_unknown_key_is_a_spelling_error() -> None:
    message = refused(GOOD.replace("    quality: 40", "    qualty: 40"))
    assert message.startswith("ops.yaml:11: deployments.small.qualty: is not a known setting")


def test_bad_enum_lists_the_choices() -> None:
    message = refused(GOOD.replace("openness: open", "openness: opne"))
    assert message.startswith(
        "ops.yaml:9: deployments.small.openness: must be one of 'open' or 'closed' (got 'opne')"
    )


def test_missing_field() -> None:
    message = refused(GOOD.replace("    modality: chat\n", ""))
    assert "ops.yaml:5: deployments.small.modality: is required but missing" in message


def test_reference_to_unknown_deployment() -> None:
    message = refused(GOOD.replace("candidates: [small]", "candidates: [small, large]"))
    assert (
        message
        == "ops.yaml:14: routes.chat.candidates.1: names deployment 'large', which is not under deployments"
    )


def test_reference_to_unknown_provider() -> None:
    message = refused(GOOD.replace("provider: local", "provider: lcoal"))
    assert (
        message
        == "ops.yaml:6: deployments.small.provider: names provider 'lcoal', which is not under providers"
    )


def test_yaml_syntax_error_names_its_line() -> None:
    message = refused(GOOD.replace("candidates: [small]", "candidates: [small"))
    assert message.startswith("ops.yaml:15: YAML: not valid YAML")


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("quality: 40", "quality: -1").replace("openness: open", "openness: shut")
    assert len(refused(text).splitlines()) == 2


def test_rule_must_do_something() -> None:
    text = GOOD + "    rules:\n      - {when: {tenant: x}}\n"
    assert "routes.chat.rules.0: a rule needs at least one of require, prefer or deny" in refused(text)


def test_mixed_modalities_refused() -> None:
    text = GOOD.replace(
        "routes:",
        """  img: {provider: local, model: i, modality: image, openness: open, data: {location: local}}
routes:""",
    ).replace("candidates: [small]", "candidates: [small, img]")
    assert "mixes modalities (chat, image)" in refused(text)


def test_not_a_mapping() -> None:
    assert (
        refused("- just\n- a list\n")
        == "ops.yaml:1: policy: the file must be a mapping with version, providers, ..."
    )


@pytest.mark.parametrize("path", sorted(Path("policies").rglob("*.yaml")), ids=str)
def test_shipped_policies_load(path: Path) -> None:
    load_policy(path)
