"""Build a model's architecture from its configs with random weights (for load tests and benchmarks).

Only configs, tokenizers and scheduler files are read, so a real model's size can be exercised without
its weights.  Outputs are noise.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch


def _component_class(library: str, class_name: str) -> Any:
    return getattr(importlib.import_module(library), class_name)


def build_random_pipeline(folder: str, dtype: torch.dtype) -> Any:
    """A diffusers pipeline as described by ``folder/model_index.json``, its models randomly initialised."""
    from diffusers import ModelMixin
    from transformers import AutoConfig, PreTrainedModel

    root = Path(folder)
    index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    pipeline_class = _component_class("diffusers", index["_class_name"])
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2:
            continue
        library, class_name = spec
        if library is None or class_name is None:
            components[name] = None
            continue
        component_class = _component_class(library, class_name)
        subfolder = root / name
        if isinstance(component_class, type) and issubclass(component_class, ModelMixin):
            model = component_class.from_config(component_class.load_config(subfolder))  # type: ignore[no-untyped-call]
            components[name] = model.to(dtype)
        elif isinstance(component_class, type) and issubclass(component_class, PreTrainedModel):
            config = AutoConfig.from_pretrained(subfolder)
            components[name] = component_class._from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
        else:  # tokenizers, schedulers, feature extractors: small files, loaded as they are
            components[name] = component_class.from_pretrained(subfolder)
    return pipeline_class(**components)


def build_random_causal_lm(folder: str, dtype: torch.dtype) -> Any:
    """A causal LM from ``folder``'s ``config.json`` with random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
