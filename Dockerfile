# news-monitor: slim image, non-root, runs the daemon on the example config by default.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MONITOR_DATABASE=sqlite:////data/monitor.db \
    MONITOR_DAEMON__HEALTH_LISTEN=0.0.0.0:8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /data --create-home monitor

COPY config /config
USER monitor
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"

ENTRYPOINT ["monitor"]
CMD ["run", "--config", "/config/example.yaml"]
