# live-relay container image: `docker build -t live-relay .`, then see docs/operations.md,
# "Run with Docker".
#
# Two stages: the build stage installs everything into a virtualenv; the runtime stage copies
# only that virtualenv, so no pip, wheel cache or build tooling ships in the image.

FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies in their own layer, rebuilt only when the lock file changes, not on every code
# change. requirements/runtime.txt pins every package with its hashes (`make lock` writes it),
# so two builds of one commit install the same files.
COPY requirements/runtime.txt requirements.txt
RUN pip install --require-hashes -r requirements.txt

COPY pyproject.toml README.md ./
COPY app/ app/
RUN pip install --no-deps .


FROM python:3.12-slim AS runtime

# A fixed non-root uid, so volume permissions and Kubernetes' runAsUser can name it; USER uses
# the number, which a host or Kubernetes can check without reading /etc/passwd.
RUN useradd --system --no-log-init --uid 10001 --user-group --no-create-home relay

COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/live-relay/healthcheck.py

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080

WORKDIR /opt/live-relay
USER 10001:10001
EXPOSE 8080

# Probes the relay's own port (and scheme) as its settings say; see docker/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "/opt/live-relay/healthcheck.py"]

ENTRYPOINT ["live-relay"]
CMD ["serve"]
