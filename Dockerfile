# The dashboard image: non-root, pinned requirements, refuses to start without a JWT key.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DASHBOARD_DATA_DIR=/data \
    DASHBOARD_REQUIRE_AUTH=1

RUN useradd --create-home --uid 10001 dashboard \
    && mkdir -p /data /app \
    && chown dashboard:dashboard /data

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=dashboard:dashboard app.py serve.py ./
COPY --chown=dashboard:dashboard .streamlit/config.toml .streamlit/config.toml
COPY --chown=dashboard:dashboard services services
COPY --chown=dashboard:dashboard components components
COPY --chown=dashboard:dashboard pages pages
COPY --chown=dashboard:dashboard examples examples

USER dashboard
VOLUME ["/data"]
EXPOSE 8501 9464

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD python -c "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4); sys.exit(0 if r.read() == b'ok' else 1)"

CMD ["python", "serve.py", "--server.port", "8501", "--server.address", "0.0.0.0"]
