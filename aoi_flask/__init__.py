"""AOI Inference Agent: application factory."""

import logging
from pathlib import Path
from types import SimpleNamespace

from flask import Flask

from . import models  # noqa: F401  (registers the tables with the metadata)
from .apidocs import register_apidocs
from .config import Config
from .errors import register_errorhandlers
from .extensions import db, end_session, migrate
from .logs import configure_logging
from .security import register_security
from .services import derived
from .services.batches import BatchRunner
from .services.results import Limits, ModelGate, ResultsService
from .services.segformer import SegformerClient
from .services.storage import MB, Storage

log = logging.getLogger(__name__)


def create_app(config=Config, **overrides):
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.from_object(config)
    app.config.update(overrides)
    configure_app(app)
    configure_logging(app)
    register_security(app)
    register_extensions(app)
    register_services(app)
    register_blueprints(app)
    register_apidocs(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def configure_app(app):
    app.json.sort_keys = False  # keep fields in the documented (PRD example) order
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BATCH_MB"] * MB
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if uri.startswith("mysql"):
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_recycle", app.config["DB_POOL_RECYCLE"])
        options.setdefault("pool_size", app.config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", app.config["DB_POOL_SIZE"])
    elif uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def register_extensions(app):
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    derived.install()  # derived columns and rollups follow every ORM write (issue #12)
    # Runs before Flask-SQLAlchemy's own session teardown (teardowns run in reverse).
    app.teardown_appcontext(end_session)


def register_services(app):
    config = app.config
    storage = Storage(config["STORAGE_ROOT"], fsync=config.get("FSYNC", True))
    storage.ensure_layout()
    client = SegformerClient(
        config["MODEL_SERVICE_URL"],
        connect_timeout=config["MODEL_CONNECT_TIMEOUT"],
        read_timeout=config["MODEL_READ_TIMEOUT"],
        retries=config["MODEL_RETRIES"],
        backoff=config["MODEL_RETRY_BACKOFF"],
        info_ttl=config["MODEL_INFO_TTL"],
        health_timeout=config["MODEL_HEALTH_TIMEOUT"],
        retry_after=config["RETRY_AFTER_SECONDS"],
        breaker_threshold=config["MODEL_BREAKER_THRESHOLD"],
        breaker_cooldown=config["MODEL_BREAKER_COOLDOWN"],
    )
    distributed = bool(config["BROKER_URL"])
    gate = model_gate(config)
    limits = Limits(
        max_upload_bytes=config["MAX_UPLOAD_MB"] * MB,
        max_pixels=config["MAX_IMAGE_PIXELS"],
        thumbnail_size=config["THUMBNAIL_SIZE"],
        gate_wait=config["MODEL_GATE_WAIT"],
        max_model_body_bytes=config["MODEL_MAX_BODY_MB"] * MB,
    )
    results = ResultsService(storage, client, gate, limits)
    if distributed:
        from .tasks import CeleryBatches, celery_init_app

        batches = CeleryBatches(app, celery_init_app(app), gate.semaphore.presence)
    else:
        batches = BatchRunner(app, results, config["BATCH_WORKERS"])
    app.extensions["aoi"] = SimpleNamespace(
        storage=storage,
        client=client,
        gate=gate,
        results=results,
        batches=batches,
        distributed=distributed,
    )


def model_gate(config):
    """Embedded: a cap per process. With a broker or a Redis URL: one cap for every
    process of the cluster (the same AOI_MODEL_MAX_CONCURRENCY everywhere)."""
    limit, retry_after = config["MODEL_MAX_CONCURRENCY"], config["RETRY_AFTER_SECONDS"]
    redis_url = config["REDIS_URL"] or config["BROKER_URL"]
    if not redis_url:
        return ModelGate(limit, retry_after)
    from .services.slots import ClusterGate, ClusterSemaphore

    semaphore = ClusterSemaphore(
        redis_url,
        limit,
        lease_seconds=config["SLOT_LEASE_SECONDS"],
        prefix=config["REDIS_PREFIX"],
        exit_grace=config["SLOT_EXIT_GRACE_SECONDS"],
    )
    return ClusterGate(semaphore, retry_after)


def register_blueprints(app):
    from . import batches, download, images, reviews, system, ui, upload

    for module in (system, upload, images, reviews, batches, download, ui):
        app.register_blueprint(module.bp)


def register_commands(app):
    from .commands import aoi

    app.cli.add_command(aoi)
