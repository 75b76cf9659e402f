"""Pick the device and dtype a model runs with: CUDA in bfloat16, then MPS, then CPU in float32."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def choose_device(requested: str) -> str:
    """``requested`` unless it is ``auto``; then the best accelerator present, else ``cpu``."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(requested: str, device: str) -> torch.dtype:
    """``requested`` unless ``auto``; then bf16 on CUDA (fp16 if unsupported), fp16 on MPS, fp32 on CPU."""
    import torch

    if requested != "auto":
        dtype = getattr(torch, requested)
        assert isinstance(dtype, torch.dtype)
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def synchronize(device: str) -> None:
    """Wait for queued kernels so wall-clock timing measures the device work, not just the launch."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def configure_torch_threads(threads: int | None) -> None:
    """Set torch's process-wide intra-op thread count, if the configuration asks for one."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
