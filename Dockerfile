# tokenward: the authorization server (`tokenward serve`, the default command) and the gateway
# (`tokenward gateway --config ...`) in one image. docs/deployment.md, "Docker Compose".

# Build stage: the wheel of this project and its dependencies; compilers never reach the image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# HEALTHCHECK_URL: what the health check asks; the gateway's service sets its /readyz.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8000/healthz
# A fixed, numeric, unprivileged user, so orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 tokenward \
    && useradd --system --uid 10001 --gid tokenward --home-dir /var/lib/tokenward \
       --create-home --shell /usr/sbin/nologin tokenward
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels tokenward && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/tokenward
EXPOSE 8000
# Python, not curl: the slim image has no curl. urlopen raises on a non-2xx answer (exit 1).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["tokenward"]
CMD ["--data-dir", "/var/lib/tokenward", "serve", "--host", "0.0.0.0", "--port", "8000"]
