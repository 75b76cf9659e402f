"""Prometheus metrics on a registry of the app's own (never the process-global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class BackendMetrics:
    """All series the backend exports; images/s and tokens/s follow as rates of the counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge(
            "local_backend_queue_depth", "Requests waiting for a batch", ["model"], registry=self.registry
        )
        self.batch_size = Histogram(
            "local_backend_batch_size",
            "Units of work (images, inputs, chats) per model call",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.request_device_seconds = Histogram(
            "local_backend_request_device_seconds",
            "Device time charged to one request (its share of the batch)",
            ["model"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.device_seconds_total = Counter(
            "local_backend_device_seconds",
            "Device time spent running models",
            ["model"],
            registry=self.registry,
        )
        self.images_total = Counter(
            "local_backend_images_generated", "Images generated", ["model"], registry=self.registry
        )
        self.tokens_total = Counter(
            "local_backend_tokens",
            "Tokens processed, by kind (prompt or completion)",
            ["model", "kind"],
            registry=self.registry,
        )
        self.requests_total = Counter(
            "local_backend_requests",
            "Requests answered, by endpoint and HTTP status",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "local_backend_model_loaded", "1 when the model is loaded", ["model"], registry=self.registry
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
