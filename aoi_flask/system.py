"""System group: health of the agent and of everything it depends on."""

import time

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .extensions import db, services
from .services.batches import cluster_status

bp = Blueprint("system", __name__)
STARTED = time.monotonic()


def database_health():
    started = time.monotonic()
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable"
        db.session.rollback()
        return {"reachable": False, "backend": db.engine.dialect.name, "error": str(exc)[:300]}
    return {
        "reachable": True,
        "backend": db.engine.dialect.name,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def model_service_health():
    client = services().client
    probe = client.health()
    body = probe.pop("body", {})
    info = client.current_model() if probe["reachable"] else None
    system = str(body.get("system", ""))
    return {
        "url": client.base_url,
        **probe,
        "model_loaded": bool(body.get("model_loaded")),
        "device": body.get("device"),
        "model_name": (info or {}).get("model_name"),
        "current_model": (info or {}).get("current_model"),
        "simulator": bool(body.get("simulator")) or "simulator" in system.lower(),
        "active_calls": services().gate.active,
        "max_concurrent_calls": services().gate.limit,
        # closed, open (uploads fail fast with 503), half_open (one probe call) or disabled
        "breaker": client.breaker.snapshot(),
    }


def storage_health():
    storage = services().storage
    try:
        free = storage.free_bytes()
    except OSError:
        free = None
    return {"writable": storage.writable(), "free_bytes": free}


def cluster():
    svc = services()
    return cluster_status(svc.gate, svc.batches, svc.distributed)


@bp.get("/health")
def health():
    """Health of the agent, its database, the model service and storage.

    Open even when API keys are configured, for monitoring. `status` is `ok`,
    `degraded` (the model service is down or has no model loaded, storage is not
    writable, or in distributed mode Redis cannot be reached: still 200, and
    queries keep working) or `down` (the database cannot be reached: 503).
    `model_service.simulator` is true when the agent talks to the bundled
    simulator instead of the real model. `cluster` shows the model slots in use
    across all processes and the queue depth.
    ---
    tags: [system]
    operationId: health
    security: []
    responses:
      200:
        description: The agent and its database work (`status` ok or degraded)
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
            examples:
              ok: {$ref: '#/components/examples/HealthOk'}
              degraded: {$ref: '#/components/examples/HealthDegraded'}
      503:
        description: The database cannot be reached (`status` down)
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
            examples:
              down: {$ref: '#/components/examples/HealthDown'}
    """
    database = database_health()
    model = model_service_health()
    storage = storage_health()
    slots = cluster()
    if not database["reachable"]:
        status = "down"
    elif not (
        model["reachable"] and model["model_loaded"] and storage["writable"] and slots["reachable"]
    ):
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "service": "aoi-inference-agent",
        "uptime_seconds": round(time.monotonic() - STARTED, 1),
        "limits": {
            "max_upload_mb": current_app.config["MAX_UPLOAD_MB"],
            "max_batch_files": current_app.config["MAX_BATCH_FILES"],
            "supported_formats": ["jpeg", "png", "tiff", "bmp"],
        },
        "database": database,
        "model_service": model,
        "storage": storage,
        "cluster": slots,
    }
    return jsonify(body), 503 if status == "down" else 200
