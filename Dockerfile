# AutoMatrix in one image: the API (`automatrix serve`), and with another command the Prefect
# server or a worker, the MLflow server, or a training (`automatrix train`). Not built here: no
# Docker engine runs on this machine.
# The install steps are the Makefile's: torch==2.13.0 (CPU) first, then the package, both through
# constraints.txt. The Makefile finds torch in /opt/wheels on this machine; a build has no such
# folder, so pip takes the CPU wheel from the PyTorch CPU index instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

RUN groupadd --system automatrix && useradd --system --gid automatrix --create-home automatrix

WORKDIR /app
COPY pyproject.toml constraints.txt README.md prefect.yaml ./
COPY flows ./flows
COPY serving ./serving
COPY routing ./routing
COPY monitoring ./monitoring

RUN pip install --upgrade pip \
 && pip install torch==2.13.0 -c constraints.txt --index-url https://download.pytorch.org/whl/cpu \
 && pip install -c constraints.txt . \
 && mkdir -p /app/data /app/mlruns \
 && chown -R automatrix:automatrix /app

USER automatrix
EXPOSE 8000
# The API's probe, for the image's default command. A container that runs something else (the
# Prefect or MLflow server, a worker) states its own or `disable: true` (compose.production.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"

CMD ["automatrix", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
