"""The Flask app that speaks the model service's contract."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    request,
    send_from_directory,
)
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.utils import secure_filename

from . import messages
from .docs import DOCS_HTML, api_spec
from .failures import malformed_body, truncate_images
from .filing import CallFiles
from .imaging import UnreadableImage
from .inference import ModelCall, run_model
from .options import SimulatorOptions
from .state import MODELS, SimulatorState

ALLOWED_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "tiff", "tif")
MAX_UPLOAD_MB = 50
# Like the real service's MAX_CONTENT_LENGTH: the whole request body (multipart
# boundaries and part headers included), not the file, must fit.
MAX_CONTENT_LENGTH = MAX_UPLOAD_MB * 1024 * 1024
BASE_SIZE = 1792
PATCH_SIZE = 512
SYSTEM_NAME = "AOI defect model service simulator (segformer-simulator, no GPU, no weights)"
BATCH_ITEM_FIELDS = (
    "overlay_image",
    "combined_image",
    "mask_image",
    "total_defects",
    "processing_time",
    "analysis_results",
)

log = logging.getLogger(__name__)
routes = Blueprint("simulator", __name__)


def create_simulator_app(options: SimulatorOptions | None = None) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    # Keep the contract's field order and readable Chinese in the bodies.
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["aoi_simulator"] = SimulatorState(options or SimulatorOptions())
    app.register_blueprint(routes)
    app.register_error_handler(TooLargeInView, too_large_in_view)
    app.register_error_handler(Exception, error_as_json)
    return app


def state() -> SimulatorState:
    return current_app.extensions["aoi_simulator"]


def error(status: int, message: str):
    return jsonify(success=False, error=message), status


def error_as_json(exc: Exception):
    if isinstance(exc, HTTPException):
        return error(exc.code or 500, messages.HTTP_ERRORS.get(exc.code, exc.description or ""))
    log.exception("unexpected simulator error")
    return error(500, messages.HTTP_ERRORS[500])


def now_iso() -> str:
    return datetime.now().isoformat()


# --- system and model information -------------------------------------------


@routes.get("/health")
def health():
    return jsonify(
        status="ok",
        timestamp=now_iso(),
        model_loaded=state().options.model_loaded,
        device="cpu",
        cuda_available=False,
        system=SYSTEM_NAME,
        simulator=True,
    )


@routes.get("/api/status")
def api_status():
    current = state()
    return jsonify(
        success=True,
        model_loaded=current.options.model_loaded,
        current_model=current.current_model,
        current_model_name=current.model_name,
        available_models=list(MODELS),
        device="cpu",
        cuda_available=False,
        supported_formats=list(ALLOWED_EXTENSIONS),
        max_file_size_mb=MAX_UPLOAD_MB,
        simulator=True,
    )


@routes.get("/api/model/current")
def model_current():
    current = state()
    if not current.options.model_loaded:
        return error(503, messages.MODEL_NOT_LOADED)
    return jsonify(
        success=True,
        current_model=current.current_model,
        model_name=current.model_name,
        base_size=BASE_SIZE,
        patch_size=PATCH_SIZE,
        model_path=f"simulator://{current.current_model} (no weights)",
        timestamp=now_iso(),
        simulator=True,
    )


@routes.get("/api/model/available")
def model_available():
    current = state()
    models = [
        {"key": key, **info, "current": key == current.current_model}
        for key, info in MODELS.items()
    ]
    return jsonify(
        success=True,
        available_models=list(MODELS),
        models=models,
        current_model=current.current_model,
        simulator=True,
    )


@routes.post("/api/model/switch")
def model_switch():
    body = request.get_json(silent=True)
    model = body.get("model") if isinstance(body, dict) else None
    if model not in MODELS:
        return error(400, messages.UNKNOWN_MODEL)
    current = state()
    current.current_model = model
    return jsonify(
        success=True,
        message=messages.MODEL_SWITCHED.format(model=model),
        current_model=model,
        model_name=current.model_name,
        simulator=True,
    )


# --- uploads -------------------------------------------------------------------


def has_allowed_extension(filename: str) -> bool:
    # Like the real service: the name decides, the content is not sniffed.
    return "." in filename and filename.rsplit(".", 1)[1].lower() in ALLOWED_EXTENSIONS


def name_problem(upload: FileStorage) -> str | None:
    if not upload.filename:
        return messages.EMPTY_FILENAME
    if not has_allowed_extension(upload.filename):
        return messages.BAD_EXTENSION
    return None


def stored_name(filename: str) -> str:
    return secure_filename(filename) or "upload"


def injected_early_failure(kind: str | None):
    """Failures that answer before any work is done (None: carry on)."""
    if kind == "500":
        return error(500, messages.INJECTED_MODEL_ERROR)
    if kind == "503":
        return error(503, messages.MODEL_NOT_LOADED)
    if kind == "success_false":
        return jsonify(success=False, error=messages.INJECTED_SUCCESS_FALSE), 200
    return None


def finish(answer: dict, kind: str | None):
    """Send the answer, damaged as the injected failure asks."""
    if kind == "malformed":
        return Response(malformed_body(answer), 200, mimetype="application/json")
    if kind == "truncated":
        return jsonify(truncate_images(answer))
    return jsonify(answer)


def begin_model_call():
    """Model check and failure draw shared by both upload routes.

    Returns (failure kind, early response or None).
    """
    current = state()
    options = current.options
    if not options.model_loaded:
        return None, error(503, messages.MODEL_NOT_LOADED)
    kind = current.failures.pick(options)
    early = injected_early_failure(kind)
    if early is None and kind == "timeout":
        current.wait(options.timeout_seconds)
    return kind, early


def uploaded_files(field: str) -> list[FileStorage]:
    """The files of a multipart field.

    Werkzeug refuses a body over MAX_CONTENT_LENGTH while parsing it; the real
    service parses inside its catch-all try block, so the client sees a 500
    (not the 413 of its error handler). Raised as TooLargeInView.
    """
    try:
        return request.files.getlist(field)
    except RequestEntityTooLarge as exc:
        raise TooLargeInView() from exc


class TooLargeInView(Exception):
    """The body was over the limit; answered 500 like the real service."""


def too_large_in_view(_exc: TooLargeInView):
    return error(500, messages.TOO_LARGE_IN_VIEW)


def model_call(data: bytes, filename: str, started: float) -> ModelCall:
    current = state()
    options = current.options
    files = CallFiles(current.work_dir(), filename, datetime.now(), unique=not options.collide)
    return ModelCall(
        data=data,
        filename=filename,
        files=files,
        started=started,
        latency=options.latency,
        collision_delay=options.collision_delay,
        sleep=current.wait,
    )


@routes.post("/upload")
def upload():
    started = time.perf_counter()
    upload_file = next(iter(uploaded_files("image")), None)
    if upload_file is None:
        return error(400, messages.NO_IMAGE_FIELD)
    problem = name_problem(upload_file)
    if problem:
        return error(400, problem)
    kind, early = begin_model_call()
    if early is not None:
        return early
    call = model_call(upload_file.read(), stored_name(upload_file.filename), started)
    try:
        with state().calls:
            answer = run_model(call)
    except (UnreadableImage, OSError):
        # OSError: a same-named call of the same second removed the file.
        return error(500, messages.UNREADABLE_IMAGE)
    return finish(answer, kind)


@routes.post("/upload/batch")
def upload_batch():
    started = time.perf_counter()
    uploads = uploaded_files("images")
    if not uploads or not any(item.filename for item in uploads):
        return error(400, messages.NO_IMAGES_FIELD)
    kind, early = begin_model_call()
    if early is not None:
        return early
    current = state()
    batch_id = datetime.now().strftime("%Y%m%d_%H%M%S")
    folder = current.new_batch_folder(batch_id)
    results = [batch_item(index, item, folder) for index, item in enumerate(uploads)]
    summary_path = f"{folder}/batch_summary.json"
    answer = batch_answer(batch_id, results, time.perf_counter() - started, summary_path)
    current.write_json(summary_path, batch_summary(answer))
    return finish(answer, kind)


def batch_item(index: int, upload_file: FileStorage, output_dir: str) -> dict:
    filename = stored_name(upload_file.filename or "")
    problem = name_problem(upload_file)
    if problem:
        return failed_item(index, filename, problem)
    try:
        with state().calls:
            answer = run_model(model_call(upload_file.read(), filename, time.perf_counter()))
    except (UnreadableImage, OSError):
        return failed_item(index, filename, messages.UNREADABLE_IMAGE)
    item = {"filename": filename, "success": True, "file_index": index}
    item.update({name: answer[name] for name in BATCH_ITEM_FIELDS})
    item["output_dir"] = output_dir
    return item


def failed_item(index: int, filename: str, message: str) -> dict:
    return {
        "filename": filename,
        "success": False,
        "file_index": index,
        "error": message,
    }


def batch_answer(batch_id: str, results: list[dict], total_time: float, summary_path: str) -> dict:
    processed = sum(1 for item in results if item["success"])
    return {
        "success": True,
        "total_images": len(results),
        "processed": processed,
        "failed": len(results) - processed,
        "batch_id": batch_id,
        "total_processing_time": total_time,
        "summary_path": summary_path,
        "timestamp": now_iso(),
        "results": results,
    }


def batch_summary(answer: dict) -> dict:
    """The answer without the heavy base64 images, for the results folder."""
    summary = {key: value for key, value in answer.items() if key != "results"}
    summary["results"] = [
        {key: value for key, value in item.items() if not key.endswith("_image")}
        for item in answer["results"]
    ]
    return summary


# --- files, docs and the simulator's own control ---------------------------------


@routes.get("/download/<path:filename>")
def download(filename: str):
    root = state().existing_results_dir()
    if root is None:
        raise NotFound()
    # send_from_directory refuses anything that resolves outside root.
    return send_from_directory(root, filename)


@routes.get("/docs")
def docs():
    return Response(DOCS_HTML, mimetype="text/html")


@routes.get("/apispec.json")
def apispec():
    return jsonify(api_spec())


@routes.route("/_simulator/calls", methods=["GET", "DELETE"])
def simulator_calls():
    counter = state().calls
    if request.method == "DELETE":
        counter.reset()
    calls = counter.snapshot()
    if request.args.get("timeline") == "true":
        calls["timeline"] = counter.timeline()
    return jsonify(success=True, simulator=True, calls=calls)


@routes.route("/_simulator/config", methods=["GET", "POST"])
def simulator_config():
    options = state().options
    if request.method == "POST":
        changes = request.get_json(silent=True)
        if not isinstance(changes, dict):
            return error(400, messages.BAD_CONFIG + "body must be a JSON object")
        try:
            options.update(changes)
        except (TypeError, ValueError) as exc:
            return error(400, messages.BAD_CONFIG + str(exc))
    return jsonify(success=True, simulator=True, options=options.to_dict())
