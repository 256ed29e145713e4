# A SageMaker bring-your-own container that trains (`train`) and serves (`serve`).
#
#   docker build -t multilabel:0.1.0 .
#   python launch.py train ... --image-uri <account>.dkr.ecr.<region>.amazonaws.com/multilabel:0.1.0
#
# BASE_IMAGE must be Debian bookworm (or compatible) with python3 and its venv module.
# The default, python:3.11-slim-bookworm, works on GPU instances as it is: PyTorch's CUDA
# wheels bring their own CUDA libraries, and SageMaker provides the NVIDIA driver.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# torch to install: the default is PyPI's CUDA build. WHEELS_DIR and CA_BUNDLE are for
# builds that take wheels from a mounted folder or must trust a private CA (paths inside
# the build, e.g. mounted with `buildah bud -v`).
ARG TORCH_SPEC=torch==2.13.0
ARG WHEELS_DIR=
ARG CA_BUNDLE=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# gcc and the Python headers: sagemaker-training compiles a small C extension.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY requirements.txt requirements-container.txt /tmp/requirements/
RUN /opt/venv/bin/pip install ${CA_BUNDLE:+--cert "$CA_BUNDLE"} ${WHEELS_DIR:+--find-links "$WHEELS_DIR"} "${TORCH_SPEC}" \
    && /opt/venv/bin/pip install ${CA_BUNDLE:+--cert "$CA_BUNDLE"} -r /tmp/requirements/requirements-container.txt \
    && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="multilabel" \
      org.opencontainers.image.description="Multi-label text classification: SageMaker training and serving" \
      org.opencontainers.image.version="${VERSION}"
# Java runs Multi Model Server, the inference toolkit's HTTP front end.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY train.py inference.py requirements.txt /opt/ml/code/
COPY multilabel /opt/ml/code/multilabel
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
# The training program's location is set by the entry point's `train` branch only: the
# inference toolkit reads SAGEMAKER_PROGRAM too, as the handler module's name.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_DISABLE_TELEMETRY=1
# A non-root user owns /opt/ml and the model server's config file. SageMaker mounts its
# own /opt/ml directories at run time; where those are root-only, build with
# --build-arg RUN_AS=root.
ARG RUN_AS=1000
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin model \
    && mkdir -p /opt/ml/model /opt/ml/input /opt/ml/output /opt/ml/checkpoints \
    && touch /etc/sagemaker-mms.properties \
    && chown -R 1000:1000 /opt/ml /etc/sagemaker-mms.properties
USER ${RUN_AS}
WORKDIR /opt/ml/code
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["serve"]
