# syntax=docker/dockerfile:1.7
#
# streamrank worker / CLI image (CPU torch). It also runs the encoder service on CPU
# (`streamrank encode-server`, the compose `cpu` profile); Dockerfile.encoder is the GPU one.
#
#   CPU:  docker build -t streamrank:cpu .
#   CUDA: docker build -t streamrank:cuda \
#           --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#         (the CUDA runtime comes with the torch wheels; the host provides the driver)
#   Own encoder model baked in (a Hugging Face model directory inside the build context):
#         docker build -t streamrank:cpu --build-arg ENCODER_MODEL_DIR=models/my-bert .

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# torch first, from its own index: installing the project alone would pull the
# default (CUDA) wheels from PyPI, several GiB the CPU image does not need.
# TORCH_SPEC carries the pin, which hadolint cannot see through the variable.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
 && pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY encoders ./encoders
RUN pip install . \
 && streamrank --help > /dev/null


FROM ${PYTHON_IMAGE} AS model

ARG ENCODER_MODEL_DIR=""

# The bind mount keeps the (possibly large) model out of every layer but the final copy,
# and an empty ENCODER_MODEL_DIR leaves an empty directory: the bundled model is used.
RUN --mount=type=bind,target=/context \
    mkdir -p /opt/streamrank/model \
 && if [ -n "${ENCODER_MODEL_DIR}" ]; then \
        cp -a "/context/${ENCODER_MODEL_DIR}/." /opt/streamrank/model/ \
     && test -f /opt/streamrank/model/config.json; \
    fi


FROM ${PYTHON_IMAGE} AS runtime

ARG ENCODER_MODEL_DIR=""

LABEL org.opencontainers.image.title="streamrank" \
      org.opencontainers.image.description="Streaming real-time recommendation reranker"

# The model is baked in (the bundled package, or ENCODER_MODEL_DIR): with HF_HUB_OFFLINE=1
# nothing is fetched at start; set HF_HUB_OFFLINE=0 to let a hub model name download.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMRANK_DATA_DIR=/var/lib/streamrank \
    STREAMRANK_WEB_HOST=0.0.0.0 \
    STREAMRANK_WEB_PORT=6066 \
    HF_HUB_OFFLINE=1 \
    STREAMRANK_ENCODER_MODEL=${ENCODER_MODEL_DIR:+/opt/streamrank/model}

RUN groupadd --system --gid 10001 streamrank \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/streamrank --create-home \
        --shell /usr/sbin/nologin streamrank \
 && mkdir -p /var/lib/streamrank /app \
 && chown 10001:10001 /var/lib/streamrank /app

COPY --from=builder /opt/venv /opt/venv
COPY --from=model /opt/streamrank/model /opt/streamrank/model

WORKDIR /app
USER 10001:10001

# 6066: worker /metrics and /healthz; 8080: encode-server.
EXPOSE 6066 8080

# Start period covers model load and Kafka partition assignment / table recovery.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMRANK_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["streamrank"]
CMD ["worker"]
