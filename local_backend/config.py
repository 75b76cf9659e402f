"""The backend's own model declarations (``models.yaml``), validated with pydantic.

A bad file is refused with :class:`ConfigError` naming the file and the offending field, so an operator
sees ``models.yaml: models[1].batching.max_batch_size: Input should be greater than 0`` rather than a
traceback from deep inside a model loader.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Modality = Literal["chat", "image", "embedding"]
DtypeName = Literal["auto", "float32", "float16", "bfloat16"]
LoadPolicy = Literal["startup", "first_use"]


class ConfigError(ValueError):
    """The configuration file is missing, unparsable or invalid; the message names file and reason."""


class _Strict(BaseModel):
    # Unknown keys are refused so a typo such as ``max_batch`` does not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(_Strict):
    """Dynamic batching and admission limits for one model."""

    max_batch_size: int = Field(default=1, ge=1, le=256)
    max_wait_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    max_queue: int = Field(default=64, ge=1, le=100_000)


class SpeedConfig(_Strict):
    """Opt-in speed settings; the image ones apply to diffusers pipelines only."""

    torch_compile: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False


class ImageDefaults(_Strict):
    """Values used when an image request leaves them out, plus per-model request limits."""

    num_inference_steps: int = Field(default=25, ge=1, le=200)
    guidance_scale: float = Field(default=7.0, ge=0.0, le=50.0)
    width: int = Field(default=512, ge=8, le=4096)
    height: int = Field(default=512, ge=8, le=4096)
    max_n: int = Field(default=8, ge=1, le=64)
    max_side: int = Field(default=2048, ge=8, le=8192)
    max_steps: int = Field(default=100, ge=1, le=1000)


class ChatDefaults(_Strict):
    """Generation defaults and limits for a chat model."""

    max_tokens: int = Field(default=256, ge=1)
    max_tokens_limit: int = Field(default=2048, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)


class RayActorOptions(_Strict):
    """Resources Ray reserves for each replica (``ray_actor_options``); fractions share a device."""

    num_cpus: float = Field(default=1.0, ge=0.0)
    num_gpus: float = Field(default=0.0, ge=0.0)


class RayAutoscaling(_Strict):
    """Ray Serve's ``autoscaling_config``: replicas follow the number of requests in flight per replica."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0.0)

    @model_validator(mode="after")
    def _check_bounds(self) -> RayAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class RayDeploymentConfig(_Strict):
    """How ``serve-ray`` runs one model (or the ingress) as a Ray Serve deployment; ``serve`` ignores it.

    The key names are Ray Serve's own, so Ray's documentation applies as written.
    """

    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling_config: RayAutoscaling | None = None
    ray_actor_options: RayActorOptions = RayActorOptions()
    # None: enough for a full batch plus the next one gathering (models), or 256 (ingress).
    max_ongoing_requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_scaling(self) -> RayDeploymentConfig:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self


class ModelConfig(_Strict):
    """One declared model: what clients call it, where it comes from and how it is run."""

    name: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, description="Hugging Face id or local directory")
    modality: Modality
    dtype: DtypeName = "auto"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    load: LoadPolicy = "first_use"
    random_weights: bool = False
    batching: BatchingConfig = BatchingConfig()
    speed: SpeedConfig = SpeedConfig()
    image: ImageDefaults = ImageDefaults()
    chat: ChatDefaults = ChatDefaults()
    # Used by ``serve-ray`` only; None means one replica with Ray's default resources.
    ray: RayDeploymentConfig | None = None

    @model_validator(mode="after")
    def _check_modality_options(self) -> ModelConfig:
        image_only = ("channels_last", "fuse_qkv", "vae_tiling", "cpu_offload")
        if self.modality != "image":
            enabled = [name for name in image_only if getattr(self.speed, name)]
            if enabled:
                raise ValueError(f"speed options {enabled} apply to image models only")
        if self.modality == "embedding" and self.random_weights:
            raise ValueError("random_weights is not supported for embedding models")
        return self


class BackendConfig(_Strict):
    """The whole file: a list of models with unique names."""

    models: list[ModelConfig] = Field(min_length=1)
    retry_failed_load_after_s: float = Field(default=30.0, ge=0.0)
    # torch's intra-op threads for the whole process (None: torch's default, one per core).  Fewer
    # threads avoid oversubscription when the backend shares its cores with other busy processes.
    torch_threads: int | None = Field(default=None, ge=1, le=1024)
    # ``serve-ray`` only: the HTTP ingress deployment (routing, validation, chat models run there).
    ray_ingress: RayDeploymentConfig = RayDeploymentConfig()

    @model_validator(mode="after")
    def _check_unique_names(self) -> BackendConfig:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name {model.name!r} is declared twice")
            seen.add(model.name)
        return self

    def model(self, name: str) -> ModelConfig | None:
        """The declared model called ``name``, if any."""
        return next((model for model in self.models if model.name == name), None)


def default_config_path() -> Path:
    """The ``models.yaml`` shipped inside the package."""
    return Path(str(resources.files("local_backend").joinpath("models.yaml")))


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_config(data: object, *, origin: str) -> BackendConfig:
    """Validate already-parsed YAML/JSON ``data``; ``origin`` names it in error messages."""
    try:
        return BackendConfig.model_validate(data)
    except ValidationError as error:
        reasons = "; ".join(
            f"{_format_location(detail['loc'])}: {detail['msg']}" for detail in error.errors()
        )
        raise ConfigError(f"{origin}: invalid configuration: {reasons}") from None


def load_config(path: Path | str | None = None) -> BackendConfig:
    """Read and validate a ``models.yaml``; ``None`` means the packaged default."""
    config_path = Path(path) if path is not None else default_config_path()
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{config_path}: cannot read configuration: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{config_path}: not valid YAML: {error}") from None
    return parse_config(data, origin=str(config_path))
