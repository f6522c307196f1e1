"""Upload group: send images to the model service and store the results."""

import base64

from flask import Blueprint, current_app, jsonify, request, url_for

from .errors import ApiError, PayloadTooLarge
from .extensions import services
from .schemas import ImageResultSchema, UploadOptionsSchema, load_or_400
from .services.storage import MB

bp = Blueprint("upload", __name__)


def upload_limit():
    return current_app.config["MAX_UPLOAD_MB"] * MB


def read_upload(file):
    """The bytes of one uploaded file, refusing empty names and oversize files."""
    if not file.filename:
        raise ApiError(
            "The uploaded file has no name. Choose a file (curl: -F image=@wafer.jpg).",
            code="EMPTY_FILENAME",
        )
    data = file.read(upload_limit() + 1)
    if len(data) > upload_limit():
        raise PayloadTooLarge(
            f"{file.filename} is larger than {current_app.config['MAX_UPLOAD_MB']} MB. "
            "Reduce its size or split it, then upload again.",
            code="FILE_TOO_LARGE",
        )
    return data


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
