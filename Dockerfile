# The worker and the web UI in one image, for Kubernetes or any container host. Restate itself
# runs beside it (its own image, restatedev/restate, or the npm binary); docs/deploy.md.
#
#   docker build -t durable-coding-agent .
#   worker:  docker run -p 9080:9080 -e OPENAI_API_KEY=... -e WORKER_IDENTITY_KEYS=publickeyv1_... durable-coding-agent
#   web UI:  docker run -p 3000:3000 -e RESTATE_INGRESS_URL=http://restate:8080 -e UI_HOST=0.0.0.0 -e UI_TOKENS=... durable-coding-agent python -m ui
#
# Built from the repo's files and the package registries only (Debian, PyPI), like scripts/setup.sh.
FROM python:3.11-slim-bookworm

# bubblewrap is the local sandbox's isolation; in a container it needs user namespaces (or
# SANDBOX_BACKEND=modal, which needs nothing here).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/agent
COPY pyproject.toml README.md hypercorn.toml ./
COPY app ./app
COPY sandbox ./sandbox
COPY stack ./stack
COPY ui ./ui
RUN pip install --no-cache-dir .

ENV PYTHONUNBUFFERED=1 AGENT_DATA_DIR=/var/lib/agent
EXPOSE 9080 3000
# The worker, as stack/processes.py starts it, on every interface of the container so that
# Restate can reach it (signed requests keep everyone else out: WORKER_IDENTITY_KEYS; without
# them it refuses to start here, unless WORKER_ALLOW_UNSIGNED=1).
CMD ["python", "-m", "stack.worker", "app.main:app", "--bind", "0.0.0.0:9080", "--config", "hypercorn.toml"]
