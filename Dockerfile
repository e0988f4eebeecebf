# The convergence operator: `docker build -t convergence:dev .`
# Only the runtime dependencies (pinned by constraints.txt), no dev extras,
# run as a non-root user with the `convergence run` entrypoint.

# Pinned by version tag; pin a digest too (python:…@sha256:…) where you can verify one.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# setuptools reads the readme named in pyproject.toml, so it is copied too.
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
COPY reconcilers/ reconcilers/
RUN python -m venv /opt/convergence \
    && /opt/convergence/bin/pip install --no-cache-dir -c constraints.txt . \
    && /opt/convergence/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/convergence/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 convergence \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin convergence
COPY --from=build /opt/convergence /opt/convergence
WORKDIR /tmp
USER 10001:10001
# kopf's liveness endpoint and the Prometheus /metrics port (see the chart).
EXPOSE 8080 8000
ENTRYPOINT ["convergence", "run"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=8000"]
