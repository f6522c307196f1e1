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

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..errors import ApiError, NotFound, PayloadTooLarge, ServiceUnavailable
from ..extensions import db
from ..models import CLASS_NAMES, DefectClass, Image, Region
from .imaging import MIME_TYPES, check_image, disk_name, display_name
from .segformer import CLASS_KEY
from .storage import MB, RESULT_FILES, StorageError, utc_now

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
        return ServiceUnavailable(
            f"All {self.limit} model slots are busy. Try again shortly, or send "
            "many images as one batch (POST /upload/batch), which queues them.",
            code="MODEL_BUSY",
            headers={"Retry-After": self.retry_after},
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


class ResultsService:
    def __init__(self, storage, client, gate, limits):
        self.storage = storage
        self.client = client
        self.gate = gate
        self.limits = limits

    def analyse_upload(self, data, filename):
        """A single upload: accept, analyse, store. On failure nothing is left behind."""
        self.client.breaker.check()  # model known to be down: 503 before anything is written
        accepted = self.accept(data, filename)
        try:
            return self.process(accepted, data, wait=self.limits.gate_wait)
        except BaseException:
            self.storage.remove(accepted.input_path, accepted.result_dir)
            raise

    def accept(self, data, filename):
        """Check the bytes, claim an image id and save the input (atomically)."""
        if not filename:
            raise ApiError(
                "The uploaded file has no name. Choose a file (curl: -F image=@wafer.jpg).",
                code="EMPTY_FILENAME",
            )
        if len(data) > self.limits.max_upload_bytes:
            raise PayloadTooLarge(
                f"{display_name(filename)} is larger than "
                f"{self.limits.max_upload_bytes // MB} MB. Reduce its size, then upload again.",
                code="FILE_TOO_LARGE",
            )
        checked = self.check(data)
        moment = utc_now()
        try:
            img_id, result_dir = self.storage.reserve_result_dir(moment)
        except OSError as exc:
            raise storage_error(exc) from None
        input_path = self.storage.input_relpath(
            moment, img_id, disk_name(filename, checked.extension)
        )
        try:
            self.storage.write_atomic(input_path, data)
        except OSError as exc:
            self.storage.remove(result_dir)
            raise storage_error(exc) from None
        return Accepted(img_id, result_dir, input_path, display_name(filename), checked)

    def check(self, data):
        return check_image(
            data, max_pixels=self.limits.max_pixels, thumbnail_size=self.limits.thumbnail_size
        )

    def process(self, accepted, data, *, batch_id=None, wait=None):
        """Call the model and store the results. On failure the result files are
        removed; the saved input and the claimed id stay (a batch retries them)."""
        checked = accepted.checked or self.check(data)
        answer = self.client.analyse(
            data,
            # Unique per image: the service files inputs and results by second + this
            # name, so a shared name lets concurrent calls get each other's answers.
            f"{accepted.img_id}.{checked.extension}",
            MIME_TYPES[checked.format],
            slot=self.gate(wait),  # freed before the answer is decoded and checked
            size=(checked.width, checked.height),
            label=accepted.display_name,
        )
        model_name = self.client.model_label()
        written = []
        try:
            paths = self._write_results(accepted.result_dir, answer, checked.thumbnail, written)
            moment = id_moment(accepted.img_id)
            image = build_rows(accepted, moment, answer, paths, model_name, batch_id)
            image.stored_bytes = len(data) + sum(written)
            commit_image(image)
        except Exception:
            stored = stored_anyway(accepted.img_id)
            if stored is None:
                self.storage.remove(*(f"{accepted.result_dir}/{name}" for name in RESULT_FILES))
                raise
            log.warning("image %s: its commit failed to confirm but is stored", accepted.img_id)
            image = stored  # the commit went through; only its acknowledgement was lost
        except BaseException:
            self.storage.remove(*(f"{accepted.result_dir}/{name}" for name in RESULT_FILES))
            raise
        return StoredResult(image, answer)

    def _write_results(self, result_dir, answer, thumbnail, written):
        files = {
            "combined": ("combined.png", answer.images["combined"]),
            "mask": ("mask.png", answer.images["mask"]),
            "overlay": ("overlay.png", answer.images["overlay"]),
            "json": ("analysis.json", analysis_bytes(answer.analysis)),
            "thumbnail": ("thumbnail.jpg", thumbnail),
        }
        paths = {}
        try:
            for kind, (name, content) in files.items():
                paths[kind] = self.storage.write_atomic(f"{result_dir}/{name}", content)
                written.append(len(content))
        except OSError as exc:
            raise storage_error(exc) from None
        return paths

    def delete(self, img_id):
        image = get_image(img_id)
        paths = [*image_paths(image), result_dir_of(image)]
        db.session.delete(image)
        commit_or_raise()
        self.storage.remove(*paths)


def id_moment(img_id):
    """The second an image id was claimed: its timestamp, so that the id, the day
    folder and the history date always agree (one moment for all three)."""
    return datetime.strptime(img_id[:15], "%Y%m%d_%H%M%S")


def analysis_bytes(analysis):
    """The analysis as the model sent it: json round-trips floats exactly."""
    return json.dumps(analysis, indent=2, ensure_ascii=False).encode("utf-8")


def storage_error(exc):
    return StorageError(
        f"Files could not be written to disk ({exc.strerror or exc}). Check free space "
        "and permissions of the storage folder; nothing was stored.",
    )


def build_rows(accepted, moment, answer, paths, model_name, batch_id):
    img_id = accepted.img_id
    image = Image(
        img_unique_id=img_id,
        image_height=answer.height,
        image_width=answer.width,
        processing_time_seconds=answer.processing_time,
        timestamp=moment,
        input_image_path=accepted.input_path,
        result_image_1_path=paths["combined"],
        result_image_2_path=paths["mask"],
        result_image_3_path=paths["overlay"],
        analysis_json_path=paths["json"],
        thumbnail_path=paths["thumbnail"],
        original_filename=accepted.display_name,
        model_name=model_name,
        batch_id=batch_id,
        total_defects=answer.total_defects,
    )
    classes = {}
    for key, item in answer.analysis["classes"].items():
        classes[item["class_id"]] = build_class(img_id, CLASS_KEY.match(key).group(2), item)
    for class_id, name in CLASS_NAMES.items():
        classes.setdefault(
            class_id,
            build_class(
                img_id,
                name,
                {"class_id": class_id, "total_regions": 0, "total_area_pixels": 0, "regions": []},
            ),
        )
    image.classes = [classes[class_id] for class_id in sorted(classes)]
    return image


def build_class(img_id, name, item):
    class_unique_id = f"{img_id}_{item['class_id']}"
    defect_class = DefectClass(
        class_unique_id=class_unique_id,
        img_unique_id=img_id,
        class_id=item["class_id"],
        class_name=name,
        total_regions=item["total_regions"],
        total_area_pixels=item["total_area_pixels"],
    )
    defect_class.regions = [
        Region(
            region_unique_id=f"{class_unique_id}_{region['region_id']}",
            class_unique_id=class_unique_id,
            img_unique_id=img_id,
            region_id=region["region_id"],
            centroid_x=region["centroid"]["x"],
            centroid_y=region["centroid"]["y"],
            bbox_x=region["bounding_box"]["x"],
            bbox_y=region["bounding_box"]["y"],
            bbox_width=region["bounding_box"]["width"],
            bbox_height=region["bounding_box"]["height"],
            area_pixels=region["area_pixels"],
            perimeter=region["perimeter"],
            major_axis=region["major_axis"],
            minor_axis=region["minor_axis"],
            circularity=region["circularity"],
            aspect_ratio=region["aspect_ratio"],
        )
        for region in item["regions"]
    ]
    return defect_class


def commit_image(image):
    db.session.add(image)
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
        return ServiceUnavailable(
            "The database is not reachable right now; nothing was stored. Try again in a "
            "moment; if it persists, check the database server (see /health).",
            code="DATABASE_UNAVAILABLE",
            headers={"Retry-After": 10},
        )
    return ApiError(
        "The database refused the write; nothing was stored. Try again; if it persists, "
        "report it with the time of the request.",
        code="DATABASE_ERROR",
        status=500,
    )


def get_image(img_id):
    image = db.session.get(Image, img_id)
    if image is None:
        raise NotFound(
            f"No image with id {img_id!r}. Check the id, or list images with GET /images.",
            code="IMAGE_NOT_FOUND",
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
