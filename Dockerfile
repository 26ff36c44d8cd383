# news-monitor: slim image, non-root, runs the daemon on the example config by default.
# The base image is pinned to a full version tag; pin its digest too when you build for
# production (`docker buildx imagetools inspect python:3.11.11-slim-bookworm`).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MONITOR_DATABASE=sqlite:////data/monitor.db \
    MONITOR_WEB__LISTEN=0.0.0.0:8080 \
    MONITOR_WEB__ALLOW_UNAUTHENTICATED=true

WORKDIR /app

# The dependency layer: built from pyproject.toml alone, so a change to the source does not
# rebuild it (only a change to the dependencies does).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source layer: the project itself, without touching the dependencies again.
COPY README.md ./
COPY monitor ./monitor
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /data --create-home monitor

COPY config /config
USER monitor
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"

ENTRYPOINT ["monitor"]
CMD ["run", "--config", "/config/example.yaml"]
