"""Analysing one image and keeping its results: files first, then one transaction.

Order of work for one image: check the bytes, call the model (nothing written
yet), write the result files atomically, then insert the image, its four class
rows and all regions in one transaction. If anything after the first write
fails, everything written for the image is removed again.
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..errors import ApiError, NotFound, PayloadTooLarge, ServiceUnavailable
from ..extensions import db
from ..models import CLASS_NAMES, DefectClass, Image, Region
from . import derived
from .imaging import MIME_TYPES, check_image, disk_name, display_name
from .segformer import CLASS_KEY, upload_body_size
from .storage import MB, StorageError, utc_now

log = logging.getLogger(__name__)


class ModelGate:
    """One process-wide cap on concurrent model calls, shared by every caller.
    (Distributed mode replaces it by services.slots.ClusterGate: one cap for all.)"""

    def __init__(self, limit, retry_after):
        self.limit = limit
        self.retry_after = retry_after
        self._semaphore = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.active = 0

    def __call__(self, wait=None):
        return _GateSlot(self, wait)

    def acquire(self, wait):
        """A slot token, or None when none was free within `wait` seconds."""
        return True if self._semaphore.acquire(timeout=wait) else None

    def release(self, token):
        self._semaphore.release()

    def in_use(self):
        return self.active

    def busy_error(self):
        return ServiceUnavailable.of(
            "MODEL_BUSY", limit=self.limit, headers={"Retry-After": self.retry_after}
        )


class _GateSlot:
    def __init__(self, gate, wait):
        self.gate, self.wait = gate, wait
        self.token = None

    def __enter__(self):
        self.token = self.gate.acquire(self.wait)
        if self.token is None:
            raise self.gate.busy_error()
        with self.gate._lock:
            self.gate.active += 1

    def __exit__(self, *exc):
        with self.gate._lock:
            self.gate.active -= 1
        self.gate.release(self.token)


@dataclass
class StagedResults:
    """An image's result files being written under temporary names."""

    files: object  # storage.StagedFiles
    paths: dict  # kind -> relative path once in place
    size: int  # bytes of the five files

    def commit(self):
        try:
            self.files.commit()
        except OSError as exc:
            raise storage_error(exc) from None

    def discard(self):
        self.files.discard()


@dataclass
class StoredResult:
    image: Image
    answer: object  # the validated ModelAnswer


@dataclass
class Accepted:
    """An input that passed the checks and is saved; its image id is claimed."""

    img_id: str
    result_dir: str
    input_path: str
    display_name: str
    checked: object = None  # CheckedImage, when still at hand


@dataclass
class Limits:
    max_upload_bytes: int
    max_pixels: int
    thumbnail_size: int
    gate_wait: float | None = None
    max_model_body_bytes: int | None = None  # None: the model service takes any size


class CheckedInputs:
    """The checks of batch inputs that this process accepted and will analyse soon,
    so an input is decoded once, not again for its thumbnail when its turn comes.
    Bounded (oldest dropped); a miss (another process, a restart, a retry) checks again."""

    def __init__(self, limit=2000):
        self.limit = limit
        self._checks = {}
        self._lock = threading.Lock()

    def keep(self, accepted, size):
        with self._lock:
            self._checks[accepted.img_id] = (size, accepted.checked)
            while len(self._checks) > self.limit:
                del self._checks[next(iter(self._checks))]

    def take(self, img_id, size):
        """The kept check of this input (same id and byte size), or None."""
        with self._lock:
            kept_size, checked = self._checks.pop(img_id, (None, None))
        return checked if kept_size == size else None


class ResultsService:
    def __init__(self, storage, client, gate, limits):
        self.storage = storage
        self.client = client
        self.gate = gate
        self.limits = limits
        self.checked_inputs = CheckedInputs()

    def analyse_upload(self, data, filename, trace=None):
        """A single upload: accept, analyse, store. On failure nothing is left behind.
        `trace`: traceability values (lot_id, wafer_id, ...) stored with the image."""
        self.client.breaker.check()  # model known to be down: 503 before anything is written
        accepted = self.accept(data, filename)
        try:
            return self.process(accepted, data, wait=self.limits.gate_wait, trace=trace)
        except BaseException:
            self.storage.remove(accepted.input_path, accepted.result_dir)
            raise

    def accept(self, data, filename):
        """Check the bytes, claim an image id and save the input (atomically)."""
        if not filename:
            raise ApiError.of("EMPTY_FILENAME")
        if len(data) > self.limits.max_upload_bytes:
            raise PayloadTooLarge.of(
                "FILE_TOO_LARGE",
                name=display_name(filename),
                limit=self.limits.max_upload_bytes // MB,
            )
        checked = self.check(data)
        moment = utc_now()
        try:
            img_id, result_dir = self.storage.reserve_result_dir(moment)
        except OSError as exc:
            raise storage_error(exc) from None
        try:
            self.check_deliverable(data, filename, img_id, checked)
        except ApiError:
            self.storage.remove(result_dir)
            raise
        input_path = self.storage.input_relpath(
            moment, img_id, disk_name(filename, checked.extension)
        )
        try:
            self.storage.write_atomic(input_path, data)
        except OSError as exc:
            self.storage.remove(result_dir)
            raise storage_error(exc) from None
        return Accepted(img_id, result_dir, input_path, display_name(filename), checked)

    def check_deliverable(self, data, filename, img_id, checked):
        """413 for a file the model service would refuse: its limit is on the whole
        request body, so a file just under it does not fit with the form's headers."""
        limit = self.limits.max_model_body_bytes
        mime_type = MIME_TYPES[checked.format]
        body = upload_body_size(model_call_name(img_id, checked), mime_type, len(data))
        if limit is None or body <= limit:
            return
        largest = limit - (body - len(data))
        raise PayloadTooLarge.of(
            "FILE_TOO_LARGE_FOR_MODEL",
            name=display_name(filename),
            file_bytes=len(data),
            request_bytes=body,
            model_max_body_bytes=limit,
            max_file_bytes=largest,
            details={
                "file_bytes": len(data),
                "request_bytes": body,
                "model_max_body_bytes": limit,
                "max_file_bytes": largest,
            },
        )

    def check(self, data):
        return check_image(
            data, max_pixels=self.limits.max_pixels, thumbnail_size=self.limits.thumbnail_size
        )

    def process(self, accepted, data, *, batch_id=None, wait=None, trace=None):
        """Call the model and store the results. On failure the result files are
        removed; the saved input and the claimed id stay (a batch retries them)."""
        checked = (
            accepted.checked
            or self.checked_inputs.take(accepted.img_id, len(data))
            or self.check(data)
        )
        answer = self.client.analyse(
            data,
            model_call_name(accepted.img_id, checked),
            MIME_TYPES[checked.format],
            slot=self.gate(wait),  # freed before the answer is decoded and checked
            size=(checked.width, checked.height),
            label=accepted.display_name,
            # The files are written (to temporary names) while the PNG checks run.
            while_checking=lambda answer: self._stage_results(
                accepted.result_dir, answer, checked.thumbnail
            ),
        )
        staged = answer.staged
        try:
            model_name = self.client.model_label()
            staged.commit()
            rows = image_rows(accepted, answer, staged.paths, model_name, batch_id)
            rows.image.update(trace or {})
            rows.image["stored_bytes"] = len(data) + staged.size
            insert_image(rows)
            image = rows.view()
        except Exception:
            stored = stored_anyway(accepted.img_id)
            if stored is None:
                staged.discard()
                self.storage.remove(*staged.paths.values())
                raise
            log.warning("image %s: its commit failed to confirm but is stored", accepted.img_id)
            image = stored  # the commit went through; only its acknowledgement was lost
        except BaseException:
            staged.discard()
            self.storage.remove(*staged.paths.values())
            raise
        return StoredResult(image, answer)

    def _stage_results(self, result_dir, answer, thumbnail):
        """Start writing the five result files, each synced, to temporary names;
        StagedResults.commit() renames them and syncs their folder (before the
        database commit: durable once acknowledged)."""
        files = {
            "combined": ("combined.png", answer.images["combined"]),
            "mask": ("mask.png", answer.images["mask"]),
            "overlay": ("overlay.png", answer.images["overlay"]),
            "json": ("analysis.json", analysis_bytes(answer.analysis)),
            "thumbnail": ("thumbnail.jpg", thumbnail),
        }
        paths = {kind: f"{result_dir}/{name}" for kind, (name, _) in files.items()}
        try:
            staged = self.storage.stage_files(
                {paths[kind]: content for kind, (_, content) in files.items()}
            )
        except OSError as exc:
            raise storage_error(exc) from None
        return StagedResults(staged, paths, sum(len(content) for _, content in files.values()))

    def delete(self, img_id):
        image = get_image(img_id)
        paths = [*image_paths(image), result_dir_of(image)]
        db.session.delete(image)
        commit_or_raise()
        self.storage.remove(*paths)


def model_call_name(img_id, checked):
    """Unique per image: the service files inputs and results by second + this name,
    so a shared name lets concurrent calls get each other's answers."""
    return f"{img_id}.{checked.extension}"


def id_moment(img_id):
    """The second an image id was claimed: its timestamp, so that the id, the day
    folder and the history date always agree (one moment for all three)."""
    return datetime.strptime(img_id[:15], "%Y%m%d_%H%M%S")


def analysis_bytes(analysis):
    """The analysis as the model sent it: json round-trips floats exactly."""
    return json.dumps(analysis, indent=2, ensure_ascii=False).encode("utf-8")


def storage_error(exc):
    return StorageError.of("STORAGE_ERROR", reason=exc.strerror or exc)


@dataclass
class ImageRows:
    """One image's rows as plain dicts, inserted with one executemany per table."""

    image: dict
    classes: list
    regions: list

    def view(self):
        """The stored image as (transient) objects for the answer, without reading back."""
        image = Image(**self.image)
        image.classes = [DefectClass(**row) for row in self.classes]
        return image


def image_rows(accepted, answer, paths, model_name, batch_id):
    img_id = accepted.img_id
    image = {
        "img_unique_id": img_id,
        "image_height": answer.height,
        "image_width": answer.width,
        "processing_time_seconds": answer.processing_time,
        "timestamp": id_moment(img_id),
        "input_image_path": accepted.input_path,
        "result_image_1_path": paths["combined"],
        "result_image_2_path": paths["mask"],
        "result_image_3_path": paths["overlay"],
        "analysis_json_path": paths["json"],
        "thumbnail_path": paths["thumbnail"],
        "original_filename": accepted.display_name,
        "model_name": model_name,
        "batch_id": batch_id,
        "total_defects": answer.total_defects,
    }
    items = {item["class_id"]: (key, item) for key, item in answer.analysis["classes"].items()}
    classes, regions = [], []
    # All four classes get a row, empty ones too, in class id order.
    for class_id in sorted({*items, *CLASS_NAMES}):
        key, item = items.get(class_id, (None, None))
        name = CLASS_KEY.match(key).group(2) if key else CLASS_NAMES[class_id]
        class_unique_id = f"{img_id}_{class_id}"
        classes.append(
            {
                "class_unique_id": class_unique_id,
                "img_unique_id": img_id,
                "class_id": class_id,
                "class_name": name,
                "total_regions": item["total_regions"] if item else 0,
                "total_area_pixels": item["total_area_pixels"] if item else 0,
            }
        )
        for region in item["regions"] if item else ():
            row = region_row(img_id, class_unique_id, region)
            # Derived copies for region search (issue #12, services/derived.py).
            row.update(class_id=class_id, image_timestamp=image["timestamp"], batch_id=batch_id)
            regions.append(row)
    return ImageRows(image, classes, regions)


def region_row(img_id, class_unique_id, region):
    centroid, box = region["centroid"], region["bounding_box"]
    return {
        "region_unique_id": f"{class_unique_id}_{region['region_id']}",
        "class_unique_id": class_unique_id,
        "img_unique_id": img_id,
        "region_id": region["region_id"],
        "centroid_x": centroid["x"],
        "centroid_y": centroid["y"],
        "bbox_x": box["x"],
        "bbox_y": box["y"],
        "bbox_width": box["width"],
        "bbox_height": box["height"],
        "area_pixels": region["area_pixels"],
        "perimeter": region["perimeter"],
        "major_axis": region["major_axis"],
        "minor_axis": region["minor_axis"],
        "circularity": region["circularity"],
        "aspect_ratio": region["aspect_ratio"],
    }


def insert_image(rows):
    """The image, its class rows and its regions in one transaction: Core inserts,
    one executemany per table (no ORM object per region). Core inserts pass no ORM
    hook, so the per-day rollups are added here, in the same transaction (rollup rows
    first: the lock order of services/derived.py)."""
    session = db.session
    try:
        derived.add_to_rollups(session.connection(), [rows.view()])
        session.execute(insert(Image.__table__), [rows.image])
        session.execute(insert(DefectClass.__table__), rows.classes)
        if rows.regions:
            session.execute(insert(Region.__table__), rows.regions)
    except SQLAlchemyError as exc:
        session.rollback()
        log.exception("database write failed")
        raise database_error(exc) from None
    commit_or_raise()


def stored_anyway(img_id):
    """After a failed write: the image row if it is in the database after all (the
    connection broke after COMMIT reached the server), else None. Its files belong
    to that row then and must stay."""
    try:
        db.session.rollback()
        return db.session.get(Image, img_id)
    except SQLAlchemyError:
        db.session.rollback()
        return None


def commit_or_raise():
    try:
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("database write failed")
        raise database_error(exc) from None


def database_error(exc):
    if isinstance(exc, OperationalError):
        return ServiceUnavailable.of(
            "DATABASE_LOST_WRITE",
            headers={"Retry-After": 10},
        )
    return ApiError.of("DATABASE_ERROR")


def get_image(img_id):
    image = db.session.get(Image, img_id)
    if image is None:
        raise NotFound.of(
            "IMAGE_NOT_FOUND",
            img_id=img_id,
        )
    return image


def image_paths(image):
    return [
        image.input_image_path,
        image.result_image_1_path,
        image.result_image_2_path,
        image.result_image_3_path,
        image.analysis_json_path,
        image.thumbnail_path,
    ]


def read_analysis(storage, image):
    return json.loads(storage.path(image.analysis_json_path).read_bytes())


def result_dir_of(image):
    path = image.result_image_1_path or image.analysis_json_path
    return path.rsplit("/", 1)[0] if path else None


def regions_of(img_id, class_name=None):
    query = (
        select(DefectClass)
        .where(DefectClass.img_unique_id == img_id)
        .order_by(DefectClass.class_id)
    )
    if class_name:
        query = query.where(DefectClass.class_name == class_name)
    return db.session.scalars(query).all()
