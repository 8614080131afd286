# syntax=docker/dockerfile:1
# agentqueue: the REST API, the live dashboard, /metrics and MCP over HTTP, with the drivers of
# every store (SQLite built in, PostgreSQL, Redis).
#
#   docker build -t agentqueue .
#   docker run -d --name aq -p 8000:8000 -v agentqueue-data:/data agentqueue
#   docker exec aq agentqueue api-keys create --name admin --scope admin
#
# The server listens on 0.0.0.0, so every route but /healthz needs an API key: until the store
# has one it answers 401 (and says so in its start-up log). The key command above runs in the
# container against the same store (AGENTQUEUE_URL). Without --app the demo job types run, so a
# first `docker run` shows jobs moving; your own image adds your code:
#
#   FROM agentqueue
#   COPY --chown=agentqueue myapp /app/myapp
#   CMD ["agentqueue", "serve", "--host", "0.0.0.0", "--app", "myapp.jobs:queue"]
#
# tests/packaging/ performs these steps (wheels, a fresh venv, this CMD and HEALTHCHECK) and
# lints this file with hadolint.

# ---- build: the wheels of agentqueue and every dependency (build tools stay in this stage)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agentqueue ./agentqueue
COPY ai_rules ./ai_rules
COPY skills ./skills
COPY docs ./docs
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres,redis]"

# ---- runtime: the installed package, a non-root user, the SQLite volume
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted, not copied: they never become a layer of the image. They are
# exactly agentqueue[postgres,redis] and its dependencies, each a pinned file.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index /wheels/*.whl \
    && groupadd --gid 10001 agentqueue \
    && useradd --create-home --uid 10001 --gid 10001 agentqueue \
    && mkdir -p /data /app \
    && chown agentqueue:agentqueue /data /app

# The default store is a SQLite file on the volume; point AGENTQUEUE_URL at PostgreSQL or
# Redis to scale out (see compose.yaml).
ENV AGENTQUEUE_URL=sqlite:////data/agentqueue.db \
    PYTHONPATH=/app
VOLUME ["/data"]
WORKDIR /app
# Numeric, so a cluster can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# slim has no curl: Python's urllib fails (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["agentqueue", "serve", "--host", "0.0.0.0", "--port", "8000"]
