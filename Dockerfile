# One image for every role of the cluster: web (python run.py), worker (celery) and
# the one-shot schema migration. Its install step is the README's: a venv and the
# pinned requirements.txt, nothing else.
FROM python:3.11-slim-bookworm

WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AOI_HOST=0.0.0.0 \
    AOI_PORT=5000 \
    AOI_STORAGE_ROOT=/data

COPY . .
RUN useradd --system --uid 10001 aoi && mkdir -p /data && chown aoi /data
USER aoi

EXPOSE 5000
CMD ["python", "run.py"]
