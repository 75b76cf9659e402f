# hybrid-gateway: the routing gateway alone (no torch, no model weights).
# Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t hybrid-gateway:dev .
# Dependencies are the gateway's own ([project.dependencies] plus the `closed` extra, read from
# pyproject.toml) at the exact versions requirements.lock pins (used as a constraints file), then the
# project itself with --no-deps. The `local` extra (torch, diffusers, ...) is left out on purpose.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['closed']))" > /tmp/gateway-requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c requirements.lock -r /tmp/gateway-requirements.txt
COPY gateway ./gateway
COPY providers ./providers
COPY local_backend ./local_backend
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -c "import gateway.app, providers" \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null

FROM python:3.11-slim
LABEL org.opencontainers.image.title="hybrid-gateway" \
      org.opencontainers.image.description="OpenAI-compatible gateway routing to closed APIs or local open weights" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    GATEWAY_POLICY=/etc/hybrid-gateway/policy.yaml \
    GATEWAY_LEDGER=/var/lib/hybrid-gateway/ledger.sqlite3 \
    GATEWAY_LEDGER_SPOOL=/var/lib/hybrid-gateway/spool
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/hybrid-gateway --shell /usr/sbin/nologin gateway \
 && mkdir -p /etc/hybrid-gateway /var/lib/hybrid-gateway \
 && chown gateway:gateway /var/lib/hybrid-gateway
COPY --from=build /opt/venv /opt/venv
# A placeholder policy so the image starts on its own; compose and Helm mount the real one over it.
COPY policies/default.yaml /etc/hybrid-gateway/policy.yaml
USER 10001:10001
WORKDIR /var/lib/hybrid-gateway
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# --no-managed: in a container the local backend is its own container/pod, never a child process.
CMD ["gateway", "serve", "--policy", "/etc/hybrid-gateway/policy.yaml", "--host", "0.0.0.0", "--port", "8080", "--no-managed"]
