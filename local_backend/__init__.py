"""Local open-weights backend: OpenAI-compatible serving of diffusers, transformers and sentence-transformers.

Start it with ``python -m local_backend serve --config models.yaml --host 127.0.0.1 --port 8100``.
Endpoints: ``/v1/chat/completions`` (plain and SSE), ``/v1/images/generations``, ``/v1/embeddings``,
``/v1/models``, ``/healthz``, ``/readyz``, ``/metrics``.  Every ``usage`` carries ``device_seconds``.

Layout: ``config`` (models.yaml schema), ``app`` (``build_app``), ``http_*`` (endpoints), ``worker``
(per-model thread, dynamic batching, bounded queue), ``runners/`` (model code; the only modules that
import torch), ``sources`` (where weights come from, failing fast offline), ``testing`` (tiny models).
Importing this package imports no ML library.
"""
