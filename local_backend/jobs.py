"""The work items the HTTP layer hands to model workers, and what comes back.

Kept free of torch imports so the server can build them without loading any ML library.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class ImagePayload:
    """One request: ``n`` images of ``prompt``; image ``i`` is drawn from generator seed ``seed + i``."""

    prompt: str
    n: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    seed: int

    def batch_key(self) -> Hashable:
        """Only requests of the same size, steps and guidance can share a pipeline call."""
        return (self.width, self.height, self.num_inference_steps, self.guidance_scale)

    def weight(self) -> int:
        """Each image takes one slot of the batch."""
        return self.n


@dataclass(frozen=True)
class ImageResult:
    """The request's images, PNG-encoded, in order."""

    png_images: list[bytes]


@dataclass
class ChatPayload:
    """One chat request, already validated; ``on_start``/``on_delta`` are set for streaming requests."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    on_start: Callable[[], None] | None = None
    on_delta: Callable[[str], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def batch_key(self) -> Hashable:
        """Never merged with another request: generation runs one conversation at a time."""
        return id(self)

    def weight(self) -> int:
        """One conversation."""
        return 1


@dataclass(frozen=True)
class ChatResult:
    """The finished completion and its token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class EmbeddingPayload:
    """The texts of one request."""

    inputs: list[str]

    def batch_key(self) -> Hashable:
        """Any embedding requests can be encoded together."""
        return "embed"

    def weight(self) -> int:
        """One slot per input text."""
        return len(self.inputs)


@dataclass(frozen=True)
class EmbeddingResult:
    """One float32 row per input, and the tokens the model read (after truncation)."""

    vectors: npt.NDArray[np.float32]
    prompt_tokens: int
