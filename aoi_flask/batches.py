"""Batches group: progress of batch uploads, retries, the batch list."""

from flask import Blueprint, jsonify, request

from .extensions import services
from .schemas import (
    BatchFileSchema,
    BatchSummarySchema,
    PageSchema,
    batch_counts,
    batch_links,
    load_or_400,
    pages,
)
from .services import batches as batch_service

bp = Blueprint("batches", __name__)


def dump_progress(batch, counts):
    total = batch.total_files or 0
    finished = counts.get("done", 0) + counts.get("failed", 0)
    return {
        **BatchSummarySchema().dump(batch),
        "queued": counts.get("queued", 0),
        "processing": counts.get("processing", 0),
        "processed": counts.get("done", 0),
        "failed": counts.get("failed", 0),
        "percent_done": round(100.0 * finished / total, 1) if total else 100.0,
        **batch_links(batch.batch_id),
    }


def dump_batch(batch):
    """One batch with per-file rows (state, error, stored image)."""
    storage = services().storage
    images = batch_service.images_of(
        [item.img_unique_id for item in batch.items if item.state == "done"]
    )
    files = []
    for item in batch.items:
        row = BatchFileSchema().dump(item)
        image = images.get(row["img_unique_id"])
        row["total_defects"] = image.total_defects if image else None
        row["processing_time_seconds"] = image.processing_time_seconds if image else None
        row["retryable"] = batch_service.is_retryable(storage, item)
        files.append(row)
    times = [image.processing_time_seconds for image in images.values()]
    return {
        "success": True,
        **dump_progress(batch, batch_counts(batch.items)),
        "total_processing_time": round(sum(times), 4),
        "elapsed_seconds": elapsed(batch),
        "files": files,
    }


def elapsed(batch):
    from .services.storage import utc_now

    end = batch.finished_at or utc_now()
    return max(0.0, (end - batch.created_at).total_seconds())


@bp.get("/batches")
def list_batches():
    options = load_or_400(PageSchema(), request.args)
    total, rows = batch_service.list_batches(options["page"], options["limit"])
    counts = batch_service.state_counts([b.batch_id for b in rows])
    return jsonify(
        {
            "success": True,
            "total": total,
            "page": options["page"],
            "limit": options["limit"],
            "pages": pages(total, options["limit"]),
            "batches": [dump_progress(b, counts.get(b.batch_id, {})) for b in rows],
        }
    )


@bp.get("/batches/<batch_id>")
def get_batch(batch_id):
    return jsonify(dump_batch(batch_service.get_batch(batch_id)))


@bp.post("/batches/<batch_id>/retry")
def retry_batch(batch_id):
    retried = batch_service.retry_failed(services().storage, batch_id)
    services().batches.submit(retried)
    response = jsonify(
        {
            "success": True,
            "batch_id": batch_id,
            "retried": len(retried),
            "message": f"{len(retried)} failed file(s) queued again."
            if retried
            else "No failed files with a stored input to retry.",
            **batch_links(batch_id),
        }
    )
    return response, 202 if retried else 200
