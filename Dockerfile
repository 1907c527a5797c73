# syntax=docker/dockerfile:1
# Gameball Kafka connector image. Build:  docker build -t gameball-connector:0.1.0 .
# Two stages: wheels and a virtualenv are built in `build`; `runtime` only copies the venv,
# so no pip cache, wheels, compilers or source tree reach the final image.
# The install steps below are exercised without Docker by tests/chart/test_dockerfile.py.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    WHEELS=/wheels \
    VIRTUAL_ENV=/opt/gameball-connector
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector/ connector/
# Every dependency ships manylinux wheels, so no compiler is needed. The venv is made
# without pip: pip from the base image installs into it and stays out of the runtime.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip wheel --wheel-dir "$WHEELS" . \
 && python -m venv --without-pip "$VIRTUAL_ENV" \
 && python -m pip --python "$VIRTUAL_ENV/bin/python" install --no-cache-dir --no-index \
      --find-links "$WHEELS" gameball-connector \
 && "$VIRTUAL_ENV/bin/gameball-connector" --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gameball-connector" \
      org.opencontainers.image.description="Kafka stream connector that feeds customer actions into Gameball's batch-job API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric user so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 gameball \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin gameball
COPY --from=build /opt/gameball-connector /opt/gameball-connector
# Bytecode was compiled at install time; nothing is written at run time, so the root
# filesystem can be read-only. Unbuffered output keeps JSON log lines whole and prompt.
ENV PATH="/opt/gameball-connector/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 9464
# Exec form: the connector is PID 1 and gets SIGTERM itself; it drains and commits.
ENTRYPOINT ["gameball-connector"]
CMD ["run", "--config", "/etc/gameball-connector/config.yaml"]
