"""Vendor prices and shutdown dates from litellm's packaged price map, read without importing litellm.

litellm ships `model_prices_and_context_window_backup.json` (~4,000 models: per-token, per-image and
per-pixel prices, `deprecation_date`). Importing litellm costs seconds; parsing the JSON costs ~30 ms, so
the gateway reads the file directly, once, at policy load, and never per request.

Example::

    entry = lookup("anthropic/claude-sonnet-4-5", kind="litellm", modality=Modality.CHAT)
    entry.price.input_per_mtok, entry.deprecation_date      # 3.0, datetime.date(2026, 9, 29)
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.policy import Modality, Price

log = logging.getLogger("gateway.policy")

MAP_FILE = "model_prices_and_context_window_backup.json"

# Which of the map's `mode` values can serve a deployment of each modality.
_MODES: dict[Modality, frozenset[str]] = {
    Modality.CHAT: frozenset({"chat", "completion", "responses"}),
    Modality.IMAGE: frozenset({"image_generation"}),
    Modality.EMBEDDING: frozenset({"embedding"}),
}

# Prefixes a deployment's model may carry that the map's keys for the same model do not.
_STRIP_PREFIXES = ("openai/", "text-completion-openai/")


@dataclass(frozen=True, slots=True)
class MapEntry:
    """What the map says about one model: the key that matched, its price and shutdown date."""

    key: str
    price: Price | None
    deprecation_date: dt.date | None


def map_path() -> Path | None:
    """Where the installed litellm keeps its price map (found without importing litellm)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / MAP_FILE
    return path if path.is_file() else None


@functools.cache
def load_map() -> Mapping[str, Mapping[str, Any]]:
    """The parsed map, cached for the process; empty when litellm is not installed."""
    path = map_path()
    if path is None:
        log.info("litellm's price map is not installed; deployments need an explicit price")
        return {}
    with path.open("rb") as fh:
        data: Any = json.load(fh)
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and k != "sample_spec"}


def key_variants(model: str, kind: str) -> list[str]:
    """Keys the map may file `model` under, most specific first."""
    keys = [model]
    for prefix in _STRIP_PREFIXES:
        if model.startswith(prefix):
            keys.append(model.removeprefix(prefix))
    if kind == "fal":
        keys.append(f"fal_ai/{model}")
    elif kind == "replicate":
        keys.append(f"replicate/{model}")
    elif "/" in model:
        # litellm's (and OpenRouter-style) `anthropic/claude-sonnet-4-5` is filed as `claude-sonnet-4-5`;
        # `gemini/...` under both spellings. (fal and Replicate ids start with an owner, not a vendor.)
        keys.append(model.split("/", 1)[1])
    return list(dict.fromkeys(keys))


def lookup(model: str, *, kind: str, modality: Modality) -> MapEntry | None:
    """The map's price and shutdown date for a deployment's model, or None when the map has neither."""
    table = load_map()
    price_key: str | None = None
    price: Price | None = None
    deprecation: dt.date | None = None
    for key in key_variants(model, kind):
        raw = table.get(key)
        if raw is None or not _mode_fits(raw.get("mode"), modality):
            continue
        if price is None:
            price = price_from_entry(raw, modality)
            price_key = key if price is not None else price_key
        if deprecation is None:
            deprecation = _date(raw.get("deprecation_date"))
        price_key = price_key or key
    if price_key is None:
        return None
    return MapEntry(price_key, price, deprecation)


def price_from_entry(raw: Mapping[str, Any], modality: Modality) -> Price | None:
    """The gateway's `Price` for one map entry; None when the entry prices nothing (never a silent $0)."""
    fields: dict[str, float] = {}
    input_tok = _cost(raw, "input_cost_per_token")
    output_tok = _cost(raw, "output_cost_per_token")
    if modality is Modality.IMAGE:
        # gpt-image-* bill image tokens; the adapter reports them as completion tokens.
        output_tok = output_tok or _cost(raw, "output_cost_per_image_token")
        per_image = _cost(raw, "output_cost_per_image") or _cost(raw, "input_cost_per_image")
        per_pixel = _cost(raw, "input_cost_per_pixel") + _cost(raw, "output_cost_per_pixel")
        if per_image:
            fields["per_image"] = per_image
        if per_pixel:
            fields["per_megapixel"] = _per_million(per_pixel)
    if input_tok:
        fields["input_per_mtok"] = _per_million(input_tok)
    if output_tok:
        fields["output_per_mtok"] = _per_million(output_tok)
    return Price(**fields) if fields else None


def _mode_fits(mode: object, modality: Modality) -> bool:
    return mode is None or mode in _MODES[modality]


def _cost(raw: Mapping[str, Any], field: str) -> float:
    value = raw.get(field)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0


def _per_million(per_unit: float) -> float:
    # 2.5e-06 * 1e6 is 2.5000000000000004 in floats; prices have far fewer significant digits.
    return round(per_unit * 1e6, 9)


def _date(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
