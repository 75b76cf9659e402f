"""Reports from the ledger: spend by tenant, route, provider or deployment, and the closed-dependency audit.

Every figure is a SQL aggregate over the ledger's rows, so reports equal the ledger's sums by construction.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gateway.database import Database
from gateway.policy import Modality, Openness, Policy

GROUPS = ("tenant", "route", "provider", "deployment")
SPEND_COLUMNS = [
    "requests",
    "spend_usd",
    "prompt_tokens",
    "completion_tokens",
    "images",
    "fallbacks",
    "errors",
]


def spend_report(db: Database, by: str, since: float, until: float | None = None) -> list[dict[str, Any]]:
    if by not in GROUPS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}")
    where, params = _window(since, until)
    rows = db.query(
        f"SELECT COALESCE({by}, '-'), COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(prompt_tokens), 0), "
        "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(images), 0), COALESCE(SUM(fallbacks), 0), "
        f"COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) FROM requests WHERE {where} "
        f"GROUP BY COALESCE({by}, '-') ORDER BY 3 DESC, 1",
        params,
    )
    return [{by: r[0], **dict(zip(SPEND_COLUMNS, _numbers(r[1:]), strict=True))} for r in rows]


def closed_dependency(
    db: Database, policy: Policy, since: float, until: float | None = None
) -> dict[str, Any]:
    """The share of each route's traffic and spend on closed deployments; what stops if a vendor does."""
    where, params = _window(since, until)
    traffic = {
        r[0]: r[1:]
        for r in db.query(
            "SELECT route, COUNT(*), SUM(CASE WHEN openness = 'closed' THEN 1 ELSE 0 END), "
            "COALESCE(SUM(cost_usd), 0), "
            f"COALESCE(SUM(CASE WHEN openness = 'closed' THEN cost_usd ELSE 0 END), 0) FROM requests "
            f"WHERE {where} AND deployment IS NOT NULL GROUP BY route",
            params,
        )
    }
    routes = []
    for name, route in policy.routes.items():
        deps = [policy.deployments[c] for c in route.candidates]
        closed_vendors = sorted({d.provider for d in deps if d.openness is Openness.CLOSED})
        has_open = any(d.openness is Openness.OPEN for d in deps)
        total, closed, spend, closed_spend = traffic.get(name) or (0, 0, 0.0, 0.0)
        routes.append(
            {
                "route": name,
                "requests": int(total),
                "closed_traffic_share": round(closed / total, 4) if total else None,
                "spend_usd": round(float(spend), 8),
                "closed_spend_share": round(float(closed_spend) / float(spend), 4) if spend else None,
                "open_fallback": has_open,
                "stops_if_shut_down": [] if has_open else closed_vendors,
            }
        )
    return {"routes": routes, "image_break_even": _image_break_even(db, policy)}


def _image_break_even(db: Database, policy: Policy) -> list[dict[str, Any]]:
    """Images/day above which dedicated local hardware beats the closed price per image."""
    measured = {
        r[0]: float(r[1]) / float(r[2])
        for r in db.query(
            "SELECT deployment, SUM(device_seconds), SUM(images) FROM requests "
            "WHERE images > 0 AND device_seconds > 0 AND status = 200 GROUP BY deployment"
        )
        if r[2]
    }
    out = []
    for name, route in policy.routes.items():
        deps = [policy.deployments[c] for c in route.candidates]
        if not deps or deps[0].modality is not Modality.IMAGE:
            continue
        closed = [d for d in deps if d.openness is Openness.CLOSED and d.price and d.price.per_image]
        local = [d for d in deps if d.openness is Openness.OPEN and policy.providers[d.provider].usd_per_hour]
        for c in closed:
            for loc in local:
                per_hour = policy.providers[loc.provider].usd_per_hour or 0.0
                seconds = measured.get(loc.name, loc.est_device_seconds)
                price = c.price.per_image if c.price else None
                if not seconds or not price:
                    continue
                out.append(
                    {
                        "route": name,
                        "closed": c.name,
                        "closed_usd_per_image": price,
                        "local": loc.name,
                        "local_seconds_per_image": round(seconds, 4),
                        "seconds_source": "measured" if loc.name in measured else "policy estimate",
                        "local_usd_per_image_at_full_use": round(seconds * per_hour / 3600.0, 6),
                        "break_even_images_per_day": round(per_hour * 24.0 / price),
                        "local_capacity_images_per_day": round(86400.0 / seconds),
                    }
                )
    return out


def _window(since: float, until: float | None) -> tuple[str, tuple[float, ...]]:
    return ("ts >= ? AND ts < ?", (since, until)) if until is not None else ("ts >= ?", (since,))


def _numbers(values: tuple[Any, ...]) -> list[Any]:
    return [round(float(v), 8) if isinstance(v, float) else int(v) for v in values]


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return "(no requests in this window)"
    columns = list(rows[0])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    cells = [[str(c) for c in columns]] + [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else str(value)
