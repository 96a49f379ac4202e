# The control-plane image: the task hub server (`durabletask-server`) and the WorkerPool operator
# (`durabletask-operator`), the project installed with its `operator` and `postgres` extras. The
# Helm chart runs both from this one image and picks the program with `command:`. The workers'
# image is worker_image/Dockerfile. Build from the repository root:
#   docker build -t durabletask .
#   docker run -p 4001:4001 durabletask                          # a server, SQLite in /var/lib/durabletask
#   docker run durabletask durabletask-operator --help

# ---- build: the project's wheel and every dependency as wheels; pip's network use ends here --
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY durabletask/ durabletask/
COPY operator/durabletask_operator/ operator/durabletask_operator/
COPY worker_image/durabletask_worker/ worker_image/durabletask_worker/
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir dist ".[operator,postgres]"

# ---- runtime: those wheels in a virtual environment, installed offline; nothing else ----------
FROM python:3.12-slim
ENV VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
COPY --from=build /src/dist/ /tmp/dist/
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /tmp/dist "durabletask-pools[operator,postgres]" \
    && rm -rf /tmp/dist
# The server's default store is ./durabletask-hub.db: state lands here, where the chart mounts its volume.
WORKDIR /var/lib/durabletask
RUN chown 10001:10001 /var/lib/durabletask
# A numeric user, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001
EXPOSE 4001 9464
CMD ["durabletask-server", "--host=0.0.0.0"]
