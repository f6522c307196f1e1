"""Batches group: progress of batch uploads, retries, the batch list."""

from flask import Blueprint, jsonify, request

from .extensions import services
from .models import TRACE_FIELDS
from .schemas import BatchFileSchema, PageSchema, batch_links, load_query_or_400, pages, utc_text
from .services import batches as batch_service
from .services.storage import utc_now

bp = Blueprint("batches", __name__)


def dump_progress(progress):
    batch, counts = progress.batch, progress.counts
    total = batch.total_files or 0
    finished = counts.get("done", 0) + counts.get("failed", 0)
    return {
        "batch_id": batch.batch_id,
        "status": progress.status,
        "created_at": utc_text(batch.created_at),
        "started_at": utc_text(progress.started_at),
        "finished_at": utc_text(progress.finished_at),
        "total_images": total,
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
    progress = batch_service.progress_from_items(batch)
    images = batch_service.images_of(
        [item.img_unique_id for item in batch.items if item.state == "done"]
    )
    files = BatchFileSchema(many=True).dump(batch.items)
    for item, row in zip(batch.items, files, strict=True):
        image = images.get(row["img_unique_id"])
        row["total_defects"] = image.total_defects if image else None
        row["processing_time_seconds"] = image.processing_time_seconds if image else None
        row["retryable"] = batch_service.is_retryable(storage, item)
    times = [image.processing_time_seconds for image in images.values()]
    end = progress.finished_at or utc_now()
    return {
        "success": True,
        **dump_progress(progress),
        "total_processing_time": round(sum(times), 4),
        "elapsed_seconds": max(0.0, (end - batch.created_at).total_seconds()),
        **{name: getattr(batch, name) for name in TRACE_FIELDS},
        "files": files,
    }


@bp.get("/batches")
def list_batches():
    """All batches, newest first, with their progress.
    ---
    tags: [batches]
    operationId: list_batches
    x-query: Page
    responses:
      200:
        description: One page of batches
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchList'}
            examples:
              sample: {$ref: '#/components/examples/BatchList'}
      400: {$ref: '#/components/responses/InvalidParameter'}
      401: {$ref: '#/components/responses/Unauthorized'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    options = load_query_or_400(PageSchema(), request.args)
    total, rows = batch_service.list_batches(options["page"], options["limit"])
    progress = batch_service.progress_of(rows)
    return jsonify(
        {
            "success": True,
            "total": total,
            "page": options["page"],
            "limit": options["limit"],
            "pages": pages(total, options["limit"]),
            "batches": [dump_progress(progress[b.batch_id]) for b in rows],
        }
    )


@bp.get("/batches/<batch_id>")
def get_batch(batch_id):
    """One batch's progress: status, counts and per-file state, error and image id.

    `status` is `queued`, `running`, `done`, `partial` (some files failed) or
    `failed` (all failed). Poll it while `status` is queued or running. `cluster`
    shows the model slots in use across all processes and the queue depth.
    ---
    tags: [batches]
    operationId: get_batch
    parameters:
      - $ref: '#/components/parameters/BatchId'
    responses:
      200:
        description: The batch
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Batch'}
            examples:
              sample: {$ref: '#/components/examples/Batch'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/BatchNotFound'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
    body = dump_batch(batch_service.get_batch(batch_id))
    svc = services()
    # Model slots and queue of the whole cluster, for judging how long the rest takes.
    body["cluster"] = batch_service.cluster_status(svc.gate, svc.batches, svc.distributed)
    return jsonify(body)


@bp.post("/batches/<batch_id>/retry")
def retry_batch(batch_id):
    """Run the failed files of a batch again, from their stored inputs.

    Files refused before they were saved (wrong type, empty) cannot be retried.
    Answers 202 when files were queued, 200 when there was nothing to retry.
    ---
    tags: [batches]
    operationId: retry_batch
    parameters:
      - $ref: '#/components/parameters/BatchId'
    responses:
      200:
        description: Nothing to retry
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchRetry'}
            examples:
              sample: {$ref: '#/components/examples/BatchNothingToRetry'}
      202:
        description: Failed files queued again; follow `status_url`
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchRetry'}
            examples:
              sample: {$ref: '#/components/examples/BatchRetried'}
      401: {$ref: '#/components/responses/Unauthorized'}
      404: {$ref: '#/components/responses/BatchNotFound'}
      500: {$ref: '#/components/responses/DatabaseError'}
      503: {$ref: '#/components/responses/DatabaseUnavailable'}
    """
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
