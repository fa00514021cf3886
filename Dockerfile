# The dashboard image: the whole application (.dockerignore says what stays out), pinned requirements in a
# virtualenv, a non-root user that can write the data volume and nothing else, refuses to start without a key.
#
#   docker build -t ollama-operator-dashboard .                                   # online: PyPI
#   make wheels && docker build --network none -t ollama-operator-dashboard .     # offline: ./wheelhouse only
#
# BASE_IMAGE is any Debian-like image with `python3` (3.11, with the venv module) and `useradd`: the official
# slim image by default; an air-gapped site passes its own (`docker load`ed, or `docker import`ed from
# debootstrap, as the image tests do). Wheels in ./wheelhouse must match its Python (3.11) and glibc.
ARG BASE_IMAGE=python:3.11-slim

# ---- the requirements, in a virtualenv: from ./wheelhouse with --no-index when present, else from PyPI ----
FROM ${BASE_IMAGE} AS requirements
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# `wheelhouse*` matches nothing on an online build; with `make wheels` done, it brings the wheels along.
COPY requirements.txt wheelhouse* /build/
RUN python3 -m venv /opt/venv \
    && if ls /build/*.whl >/dev/null 2>&1; then \
         echo "Installing from the wheelhouse, offline (--no-index)"; \
         /opt/venv/bin/pip install --no-index --find-links /build -r /build/requirements.txt; \
       else \
         /opt/venv/bin/pip install -r /build/requirements.txt; \
       fi \
    && /opt/venv/bin/pip check

# ---- the application as a whole, less what .dockerignore keeps out; the wheels only went to the stage above ----
FROM ${BASE_IMAGE} AS application
COPY . /app
RUN rm -rf /app/wheelhouse \
    && chmod -R go-w /app \
    && python3 -m compileall -q /app

# ---- the image ----
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DASHBOARD_DATA_DIR=/data \
    DASHBOARD_REQUIRE_AUTH=1 \
    DASHBOARD_METRICS_PORT=9464 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0

# The user owns the data volume only: the application and its virtualenv stay root's, read-only to it.
RUN groupadd --system --gid 10001 dashboard \
    && useradd --system --uid 10001 --gid dashboard --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dashboard \
    && mkdir -p /data \
    && chown dashboard:dashboard /data \
    && chmod 0750 /data

COPY --from=requirements /opt/venv /opt/venv
COPY --from=application /app /app
WORKDIR /app

USER dashboard
VOLUME ["/data"]
EXPOSE 8501 9464

# The port and address come from the environment above, so a `docker run -e STREAMLIT_SERVER_PORT=...` stays healthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "services.healthcheck"]

CMD ["python", "serve.py"]
