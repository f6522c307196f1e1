"""Upload group: send images to the model service and store the results."""

import base64

from flask import Blueprint, current_app, jsonify, request, url_for

from .errors import ApiError
from .extensions import db, services
from .schemas import (
    BatchOptionsSchema,
    ImageResultSchema,
    UploadOptionsSchema,
    batch_links,
    load_or_400,
)
from .services import batches as batch_service
from .services.results import read_analysis
from .services.storage import MB

bp = Blueprint("upload", __name__)


def upload_limit():
    return current_app.config["MAX_UPLOAD_MB"] * MB


def read_upload(file):
    # One byte over the limit is enough for the service to call it too large.
    return file.read(upload_limit() + 1)


@bp.post("/upload")
def upload_image():
    # Refuse oversize bodies before the form is parsed (multipart overhead allowed).
    request.max_content_length = upload_limit() + MB
    options = load_or_400(UploadOptionsSchema(), {**request.args, **request.form})
    file = request.files.get("image")
    if file is None:
        raise ApiError(
            "No file in field 'image'. Send the image as multipart/form-data field "
            "'image' (curl: -F image=@wafer.jpg).",
            code="NO_FILE",
        )
    data = read_upload(file)
    stored = services().results.analyse_upload(data, file.filename)
    body = ImageResultSchema().dump(stored.image)
    body["analysis_results"] = stored.answer.analysis
    if options["include_images"]:
        for name, content in stored.answer.images.items():
            body[f"{name}_image"] = base64.b64encode(content).decode("ascii")
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for(
        "images.get_image", img_id=stored.image.img_unique_id, _external=True
    )
    return response


def read_batch_files():
    """Every `images` part, refused as a whole when there are none or too many."""
    limit = current_app.config["MAX_BATCH_FILES"]
    request.max_form_parts = limit + 100
    files = request.files.getlist("images")
    if not files:
        raise ApiError(
            "No files in field 'images'. Send each image as a multipart/form-data field "
            "'images' (curl: -F images=@a.jpg -F images=@b.jpg).",
            code="NO_FILES",
        )
    if len(files) > limit:
        raise ApiError(
            f"{len(files)} files sent; a batch takes at most {limit}. Split it into "
            "several batches.",
            code="TOO_MANY_FILES",
            details={"max_batch_files": limit, "received": len(files)},
        )
    return [(file.filename, read_upload(file)) for file in files]


@bp.post("/upload/batch")
def upload_batch():
    options = load_or_400(BatchOptionsSchema(), {**request.args, **request.form})
    files = read_batch_files()
    svc = services()
    batch = batch_service.create_batch(svc.results, files)
    queued = batch_service.queued_item_ids(batch.batch_id)
    futures = svc.batches.submit(queued)
    links = batch_links(batch.batch_id)
    if options["async_"]:
        body = {
            "success": True,
            "batch_id": batch.batch_id,
            "status": batch.status,
            "total_images": batch.total_files,
            "accepted": len(queued),
            "rejected": batch.total_files - len(queued),
            **links,
            "results": [accepted_row(item) for item in batch.items],
        }
        return jsonify(body), 202, {"Location": links["status_url"]}
    for future in futures:
        future.result()
    return jsonify(sync_summary(batch.batch_id, links))


def sync_summary(batch_id, links):
    """The reference-compatible answer of a batch that was waited for."""
    db.session.expire_all()  # the workers changed the rows in their own sessions
    batch = batch_service.get_batch(batch_id)
    storage = services().storage
    images = batch_service.images_of(
        [item.img_unique_id for item in batch.items if item.state == "done"]
    )
    results = []
    for item in batch.items:
        image = images.get(item.img_unique_id) if item.state == "done" else None
        if image is None:
            row = failed_row(item)
        else:
            row = ImageResultSchema().dump(image)
            row["analysis_results"] = read_analysis(storage, image)
        results.append({"file_index": item.file_index, **row})
    done = [row for row in results if row["success"]]
    return {
        "success": True,
        "batch_id": batch.batch_id,
        "status": batch.status,
        "total_images": batch.total_files,
        "processed": len(done),
        "failed": len(results) - len(done),
        "total_processing_time": round(sum(r["processing_time_seconds"] for r in done), 4),
        **links,
        "results": results,
    }


def failed_row(item):
    return {
        "filename": item.filename,
        "success": False,
        "error": item.error_message,
        "code": item.error_code,
    }


def accepted_row(item):
    row = {"file_index": item.file_index, "filename": item.filename, "state": item.state}
    if item.state == "failed":
        row.update(failed_row(item))
    return row
