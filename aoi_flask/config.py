"""Configuration classes read from the environment (and `.env` when present)."""

import os
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")


def env_str(name, default):
    return os.environ.get(name, default)


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


def env_bool(name, default):
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


class Config:
    """Production defaults: embedded SQLite, model service on loopback."""

    SQLALCHEMY_DATABASE_URI = env_str(
        "AOI_DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'aoi.sqlite3'}"
    )
    SQLALCHEMY_ENGINE_OPTIONS = {}
    DB_POOL_SIZE = env_int("AOI_DB_POOL_SIZE", 16)
    DB_POOL_RECYCLE = env_int("AOI_DB_POOL_RECYCLE", 280)

    MODEL_SERVICE_URL = env_str("AOI_MODEL_SERVICE_URL", "http://127.0.0.1:8080")
    MODEL_CONNECT_TIMEOUT = env_float("AOI_MODEL_CONNECT_TIMEOUT", 3.0)
    MODEL_READ_TIMEOUT = env_float("AOI_MODEL_READ_TIMEOUT", 120.0)
    MODEL_RETRIES = env_int("AOI_MODEL_RETRIES", 2)
    MODEL_RETRY_BACKOFF = env_float("AOI_MODEL_RETRY_BACKOFF", 0.5)
    MODEL_INFO_TTL = env_float("AOI_MODEL_INFO_TTL", 30.0)
    MODEL_HEALTH_TIMEOUT = env_float("AOI_MODEL_HEALTH_TIMEOUT", 2.0)
    MODEL_MAX_CONCURRENCY = env_int("AOI_MODEL_MAX_CONCURRENCY", 4)
    # The model service's limit on a whole request body (file + multipart headers), as its
    # MAX_CONTENT_LENGTH; a file that would not fit is refused with 413 before any call.
    MODEL_MAX_BODY_MB = env_int("AOI_MODEL_MAX_BODY_MB", 50)
    RETRY_AFTER_SECONDS = env_int("AOI_RETRY_AFTER_SECONDS", 30)
    # How long a single upload waits for a free model slot before a 503 MODEL_BUSY.
    MODEL_GATE_WAIT = env_float("AOI_MODEL_GATE_WAIT", 60.0)
    # Circuit breaker: after this many consecutive connection failures/timeouts, uploads
    # fail fast (503 MODEL_UNAVAILABLE) for the cool-down, then one probe call; 0 = off.
    MODEL_BREAKER_THRESHOLD = env_int("AOI_MODEL_BREAKER_THRESHOLD", 3)
    MODEL_BREAKER_COOLDOWN = env_float("AOI_MODEL_BREAKER_COOLDOWN", 15.0)

    # Distributed mode: empty = embedded (in-process pool). Set, batch items are Celery
    # tasks on this Redis broker and AOI_MODEL_MAX_CONCURRENCY holds for the whole cluster.
    BROKER_URL = env_str("AOI_BROKER_URL", "")
    # The cluster's model-slot semaphore; empty = the broker's Redis.
    REDIS_URL = env_str("AOI_REDIS_URL", "")
    # Every Redis key of the agent (queue, unacked messages, slots) starts with this.
    REDIS_PREFIX = env_str("AOI_REDIS_PREFIX", "aoi:")
    # A slot's lease, renewed by its holder every half second while the call runs. A
    # holder that stops renewing (frozen, its host off the network) loses its slot
    # after this; one that is only slow keeps it. A process that exits frees its slots
    # at once (Redis sees its connection close), once each was taken this long ago:
    # time for the call it left behind to end at the model service.
    SLOT_LEASE_SECONDS = env_float("AOI_SLOT_LEASE_SECONDS", 30.0)
    SLOT_EXIT_GRACE_SECONDS = env_float("AOI_SLOT_EXIT_GRACE_SECONDS", 1.0)
    # How long a claimed batch item belongs to its worker; after that another may
    # take it over. 0 = derived: slot wait + the longest model call + 60 s.
    ITEM_LEASE_SECONDS = env_float("AOI_ITEM_LEASE_SECONDS", 0)
    # An unacknowledged task goes back to the queue after this (its worker died);
    # 0 = derived: the item lease + 60 s (always above the model's read timeout).
    BROKER_VISIBILITY_TIMEOUT = env_float("AOI_BROKER_VISIBILITY_TIMEOUT", 0)
    # How often a worker looks for tasks whose visibility timeout has run out.
    BROKER_RESTORE_INTERVAL = env_float("AOI_BROKER_RESTORE_INTERVAL", 10.0)

    # A little above the model cap, so the cap stays saturated while results are stored.
    BATCH_WORKERS = env_int("AOI_BATCH_WORKERS", 6)
    MAX_BATCH_FILES = env_int("AOI_MAX_BATCH_FILES", 500)
    MAX_UPLOAD_MB = env_int("AOI_MAX_UPLOAD_MB", 50)
    MAX_BATCH_MB = env_int("AOI_MAX_BATCH_MB", 2048)
    MAX_IMAGE_PIXELS = env_int("AOI_MAX_IMAGE_PIXELS", 100_000_000)
    # fsync every stored file and its folder before the commit; false only for throwaway set-ups.
    FSYNC = env_bool("AOI_FSYNC", True)

    STORAGE_ROOT = env_str("AOI_STORAGE_ROOT", str(BASE_DIR))
    THUMBNAIL_SIZE = env_int("AOI_THUMBNAIL_SIZE", 256)

    API_KEYS = env_list("AOI_API_KEYS")
    # Signs the download links the API hands out; unset: derived from the API keys.
    SECRET_KEY = env_str("AOI_SECRET_KEY", "") or None
    SIGNED_URL_TTL = env_int("AOI_SIGNED_URL_TTL", 3600)
    CORS_ORIGINS = env_list("AOI_CORS_ORIGINS")

    HOST = env_str("AOI_HOST", "127.0.0.1")
    PORT = env_int("AOI_PORT", 5000)
    THREADS = env_int("AOI_THREADS", 8)
    LOG_LEVEL = env_str("AOI_LOG_LEVEL", "INFO")
    LOG_FORMAT = env_str("AOI_LOG_FORMAT", "text")

    SWAGGER_TITLE = "AOI Inference Agent API"


class DevelopmentConfig(Config):
    DEBUG = True


class TestingConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = env_str("AOI_TEST_DATABASE_URL", "sqlite://")
    MODEL_RETRIES = 0
    MODEL_RETRY_BACKOFF = 0.0
    MODEL_READ_TIMEOUT = 10.0
    API_KEYS = []
    SECRET_KEY = None
    CORS_ORIGINS = []
