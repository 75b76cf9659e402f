"""Text-to-image with diffusers pipelines, batched across requests with one generator per image."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from local_backend.config import ModelConfig, SpeedConfig
from local_backend.device import choose_device, choose_dtype, synchronize
from local_backend.jobs import ImagePayload, ImageResult
from local_backend.runners.random_init import build_random_pipeline
from local_backend.worker import BatchRun

logger = logging.getLogger(__name__)


class ImageRunner:
    """A loaded diffusers pipeline; requests with the same size, steps and guidance share one call."""

    def __init__(self, pipeline: Any, device: str) -> None:
        self.pipeline = pipeline
        self.device = device

    def run_batch(self, payloads: Sequence[ImagePayload]) -> BatchRun[ImageResult]:
        first = payloads[0]
        prompts = [payload.prompt for payload in payloads for _ in range(payload.n)]
        # CPU generators give the same image for the same seed whatever else shares the batch or device.
        generators = [
            torch.Generator("cpu").manual_seed(payload.seed + index)
            for payload in payloads
            for index in range(payload.n)
        ]
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.pipeline(
                prompt=prompts,
                width=first.width,
                height=first.height,
                num_inference_steps=first.num_inference_steps,
                guidance_scale=first.guidance_scale,
                generator=generators,
                output_type="pil",
            )
        synchronize(self.device)
        device_seconds = time.perf_counter() - started
        encoded = [_to_png(image) for image in output.images]
        results, offset = [], 0
        for payload in payloads:
            results.append(ImageResult(png_images=encoded[offset : offset + payload.n]))
            offset += payload.n
        return BatchRun(results=results, device_seconds=device_seconds)


def _to_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _apply_speed_options(pipeline: Any, speed: SpeedConfig, device: str) -> None:
    """Switch on the operator's per-model speed settings, skipping (with a log line) what does not apply."""
    if speed.fuse_qkv:
        if hasattr(pipeline, "fuse_qkv_projections"):
            pipeline.fuse_qkv_projections()
        else:
            logger.warning("%s has no fuse_qkv_projections; fuse_qkv ignored", type(pipeline).__name__)
    if speed.channels_last:
        for module in (getattr(pipeline, "unet", None), getattr(pipeline, "vae", None)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if speed.vae_tiling and getattr(pipeline, "vae", None) is not None:
        pipeline.vae.enable_tiling()
    if speed.cpu_offload and device.startswith("cuda"):
        # Offload moves each component to the GPU only while it runs: slower, but fits small GPUs.
        pipeline.enable_model_cpu_offload(device=device)
    else:
        if speed.cpu_offload:
            logger.warning("cpu_offload needs a CUDA device (have %s); ignored", device)
        pipeline.to(device)
    if speed.torch_compile:
        _compile_denoiser(pipeline)


def _compile_denoiser(pipeline: Any) -> None:
    """Compile the UNet or transformer, where nearly all of the time goes; the first call pays for it."""
    for attribute in ("unet", "transformer"):
        denoiser = getattr(pipeline, attribute, None)
        if denoiser is not None:
            setattr(pipeline, attribute, torch.compile(denoiser, fullgraph=False))
            return


def load_image_runner(model: ModelConfig, source: str) -> ImageRunner:
    """Load ``model.source`` through ``AutoPipelineForText2Image`` (or build it with random weights)."""
    from diffusers import AutoPipelineForText2Image

    device = choose_device(model.device)
    dtype = choose_dtype(model.dtype, device)
    if model.random_weights:
        pipeline = build_random_pipeline(source, dtype)
    else:
        pipeline = AutoPipelineForText2Image.from_pretrained(source, dtype=dtype)  # type: ignore[no-untyped-call]
    pipeline.set_progress_bar_config(disable=True)
    _apply_speed_options(pipeline, model.speed, device)
    return ImageRunner(pipeline, device)
