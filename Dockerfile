# syntax=docker/dockerfile:1
# raftkv images, one Dockerfile with two final targets:
#   docker build --target node     -t ghcr.io/raftkv/raftkv:0.1.0 .
#   docker build --target operator -t ghcr.io/raftkv/raftkv-operator:0.1.0 .
# (`make images` does both.) Dependencies are pinned by images/constraints-*.txt, generated
# from the project's venv by images/constraints.py. The final images hold a virtualenv and
# the slim Python runtime only: no compiler, no pip cache, no build files. No HEALTHCHECK:
# Kubernetes probes check the processes (the StatefulSet's /readyz, kopf's /healthz).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: one virtualenv per image ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY images/constraints-node.txt images/constraints-operator.txt images/
COPY node/ node/
COPY operator/ operator/
RUN python -m venv /opt/node \
 && /opt/node/bin/pip install --no-compile -c images/constraints-node.txt '.[archive]' \
 && python -m venv /opt/operator \
 && /opt/operator/bin/pip install --no-compile -c images/constraints-operator.txt '.[operator]' \
 && /opt/node/bin/pip uninstall -y pip setuptools wheel \
 && /opt/operator/bin/pip uninstall -y pip setuptools wheel

# ---- runtime base: slim Python, an unprivileged user -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.source="https://github.com/raftkv/raftkv" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="raftkv" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# uid/gid 10001: the operator's StatefulSet and the chart run with runAsUser 10001.
RUN groupadd --system --gid 10001 raftkv \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/raftkv --shell /usr/sbin/nologin raftkv \
 && mkdir -p /var/lib/raftkv \
 && chown 10001:10001 /var/lib/raftkv
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# ---- the Raft node ---------------------------------------------------------------------
FROM runtime AS node
LABEL org.opencontainers.image.title="raftkv" \
      org.opencontainers.image.description="raftkv node: a Raft-replicated key-value and lock service"
COPY --from=build /opt/node /opt/node
ENV PATH=/opt/node/bin:$PATH RAFTKV_DATA_DIR=/var/lib/raftkv/data
USER 10001:10001
WORKDIR /var/lib/raftkv
EXPOSE 7379 7380
ENTRYPOINT ["raftkv"]
CMD ["serve", "--help"]

# ---- the operator ----------------------------------------------------------------------
FROM runtime AS operator
LABEL org.opencontainers.image.title="raftkv-operator" \
      org.opencontainers.image.description="raftkv operator: runs RaftClusters on Kubernetes (kopf)"
COPY --from=build /opt/operator /opt/operator
ENV PATH=/opt/operator/bin:$PATH
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["raftkv-operator"]
