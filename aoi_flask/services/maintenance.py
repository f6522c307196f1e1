"""The agreement of files and rows (SPEC §3, §8): `flask aoi fsck` and `flask aoi cleanup`.

`check(storage)` reads every row and walks `uploads/` and `results/`, and
returns a Report of everything that breaks the storage invariants:

- every file under uploads/ and results/ belongs to a row: an image's input and
  its five result files, or a batch item's saved input. A result folder
  claimed by a queued or failed batch item may exist and be empty; stray
  `.tmp-*` files of interrupted writes are always orphans;
- every stored path of an image exists (unless the image was purged by
  retention, whose files must then be gone, or was already marked by a repair);
- every image has exactly its four class rows, each class's total_regions is
  the number of its region rows, and total_defects is their sum;
- a batch item in `done` has its image row; a `failed` item still has its
  input (so it can be retried), unless it is already recorded as lost.

`repair(storage, report)` fixes what is safe: it removes orphan and temporary
files, marks image rows whose files are missing (`images.files_missing_at`),
turns `done` items without an image row into failed-and-retryable ones and
records items whose input is gone as failed with `INPUT_MISSING`. It never
invents data: count mismatches are reported, not changed.

`purge_older_than(storage, days)` is the retention job: it deletes the input
and result files of old images and keeps their rows, marked `purged_at`.
"""

import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update

from ..errors import ApiError
from ..extensions import db
from ..models import CLASS_NAMES, BatchItem, DefectClass, Image, Region
from .results import commit_or_raise, image_paths, result_dir_of
from .storage import RESULT_FILES, utc_now

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
INPUT_MISSING = "INPUT_MISSING"
RESULT_MISSING = "RESULT_MISSING"

# kind -> (what it means, whether repair() fixes it)
PROBLEM_KINDS = {
    "orphan_file": ("a file no images or batch_items row points to", True),
    "temp_file": ("a leftover temporary file of an interrupted write", True),
    "orphan_dir": ("a result folder no row claims", True),
    "missing_file": ("an image row whose stored file is missing", True),
    "stale_missing_mark": ("an image marked files-missing whose files are all back", True),
    "purged_file_present": ("a purged image whose files are still on disk", True),
    "class_rows": ("an image without exactly its four class rows", False),
    "region_count": ("a class whose total_regions differs from its region rows", False),
    "total_defects": ("an image whose total_defects differs from its classes' regions", False),
    "done_without_image": ("a batch item in state done without its image row", True),
    "failed_input_missing": ("a failed batch item whose saved input is gone", True),
    "unfinished_input_missing": ("a queued/processing batch item whose input is gone", True),
}


@dataclass
class Problem:
    kind: str
    subject: str  # a stored path (relative) or a row id
    detail: str = ""

    @property
    def repairable(self):
        return PROBLEM_KINDS[self.kind][1]


@dataclass
class Report:
    """What check() found. `ok` is True when there is nothing to report."""

    problems: list = field(default_factory=list)
    scanned: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self):
        return not self.problems

    def by_kind(self):
        return dict(Counter(problem.kind for problem in self.problems))

    def of_kind(self, kind):
        return [problem for problem in self.problems if problem.kind == kind]

    def to_dict(self, limit=None):
        problems = self.problems if limit is None else self.problems[:limit]
        return {
            "ok": self.ok,
            "problem_count": len(self.problems),
            "by_kind": self.by_kind(),
            "scanned": self.scanned,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "problems": [
                {**asdict(problem), "repairable": problem.repairable} for problem in problems
            ],
        }

    def summary(self):
        if self.ok:
            return "no problems found"
        return ", ".join(f"{count} {kind}" for kind, count in sorted(self.by_kind().items()))


@dataclass
class Repairs:
    """What repair() did, by action."""

    actions: Counter = field(default_factory=Counter)
    skipped: list = field(default_factory=list)

    def to_dict(self):
        return {"actions": dict(self.actions), "skipped": self.skipped}


# ---- check ------------------------------------------------------------------------------


def check(storage, *, min_age=0.0):
    """Check files against rows. Files younger than `min_age` seconds are left
    out of the orphan search (a running agent writes them before it commits)."""
    started = time.monotonic()
    # A fresh transaction: under REPEATABLE READ an older one would not see recent commits.
    db.session.commit()
    report = Report()
    expected = Expected()
    check_images(storage, report, expected)
    check_classes(report)
    check_batch_items(storage, report, expected)
    walk_storage(storage, report, expected, time.time() - min_age)
    report.seconds = time.monotonic() - started
    return report


class Expected:
    """The files and result folders the rows point to."""

    def __init__(self):
        self.files = set()  # relative paths that belong to a row
        self.purged_files = set()  # paths of purged images: must be gone
        self.image_dirs = set()  # result folders of image rows
        self.item_dirs = set()  # result folders claimed by batch items


def check_images(storage, report, expected):
    rows = db.session.execute(
        select(
            Image.img_unique_id,
            Image.input_image_path,
            Image.result_image_1_path,
            Image.result_image_2_path,
            Image.result_image_3_path,
            Image.analysis_json_path,
            Image.thumbnail_path,
            Image.purged_at,
            Image.files_missing_at,
        )
    ).all()
    purged = marked = 0
    for row in rows:
        img_id, paths = row[0], [p for p in row[1:7] if p]
        folder = result_dir_of(row)
        if folder:
            expected.image_dirs.add(folder)
        if row.purged_at is not None:
            purged += 1
            expected.purged_files.update(paths)
            present = [p for p in paths if exists(storage, p)]
            if present:
                report.problems.append(Problem("purged_file_present", img_id, ", ".join(present)))
            continue
        expected.files.update(paths)
        missing = [p for p in paths if not exists(storage, p)]
        if row.files_missing_at is not None:
            marked += 1
            if not missing:
                report.problems.append(Problem("stale_missing_mark", img_id))
        elif missing:
            report.problems.append(Problem("missing_file", img_id, ", ".join(missing)))
    report.scanned["images"] = len(rows)
    report.notes["purged_images"] = purged
    report.notes["images_marked_files_missing"] = marked


def exists(storage, relpath):
    try:
        return storage.path(relpath).is_file()
    except (FileNotFoundError, OSError):
        return False


def check_classes(report):
    """Four class rows per image, region counts and total_defects (grouped queries)."""
    region_counts = dict(
        db.session.execute(
            select(Region.class_unique_id, func.count()).group_by(Region.class_unique_id)
        ).all()
    )
    classes = defaultdict(list)
    for row in db.session.execute(
        select(
            DefectClass.img_unique_id,
            DefectClass.class_unique_id,
            DefectClass.class_id,
            DefectClass.class_name,
            DefectClass.total_regions,
        )
    ):
        classes[row.img_unique_id].append(row)
        counted = region_counts.pop(row.class_unique_id, 0)
        if counted != row.total_regions:
            report.problems.append(
                Problem(
                    "region_count",
                    row.class_unique_id,
                    f"total_regions {row.total_regions}, region rows {counted}",
                )
            )
    expected_classes = sorted(CLASS_NAMES.items())
    totals = db.session.execute(select(Image.img_unique_id, Image.total_defects)).all()
    for img_id, total_defects in totals:
        rows = classes.get(img_id, [])
        found = sorted((row.class_id, row.class_name) for row in rows)
        if found != expected_classes:
            report.problems.append(
                Problem("class_rows", img_id, f"class rows {[name for _, name in found]}")
            )
        regions = sum(row.total_regions for row in rows)
        if total_defects != regions:
            report.problems.append(
                Problem(
                    "total_defects", img_id, f"total_defects {total_defects}, regions {regions}"
                )
            )
    report.scanned["classes"] = sum(len(rows) for rows in classes.values())


def check_batch_items(storage, report, expected):
    items = db.session.execute(
        select(
            BatchItem.id,
            BatchItem.batch_id,
            BatchItem.state,
            BatchItem.img_unique_id,
            BatchItem.input_path,
            BatchItem.result_dir,
            BatchItem.error_code,
        )
    ).all()
    done_ids = [item.img_unique_id for item in items if item.state == "done"]
    stored = set()
    for start in range(0, len(done_ids), 500):
        chunk = [img_id for img_id in done_ids[start : start + 500] if img_id]
        stored.update(
            db.session.scalars(select(Image.img_unique_id).where(Image.img_unique_id.in_(chunk)))
        )
    unfinished = 0
    for item in items:
        subject = f"batch_item {item.id} (batch {item.batch_id})"
        if item.input_path:
            expected.files.add(item.input_path)
        if item.result_dir:
            expected.item_dirs.add(item.result_dir)
        has_input = bool(item.input_path) and exists(storage, item.input_path)
        if item.state == "done":
            if item.img_unique_id not in stored:
                report.problems.append(
                    Problem("done_without_image", subject, f"image {item.img_unique_id}")
                )
        elif item.state == "failed":
            # Refused files (never saved) have no input_path; lost ones are recorded already.
            if item.input_path and not has_input and item.error_code != INPUT_MISSING:
                report.problems.append(Problem("failed_input_missing", subject, item.input_path))
        else:
            unfinished += 1
            if not has_input:
                report.problems.append(
                    Problem("unfinished_input_missing", subject, str(item.input_path))
                )
    report.scanned["batch_items"] = len(items)
    report.notes["unfinished_batch_items"] = unfinished
    report.notes["failed_items_input_lost"] = sum(
        1 for item in items if item.state == "failed" and item.error_code == INPUT_MISSING
    )


def walk_storage(storage, report, expected, newest):
    """Every file under uploads/ and results/ must belong to a row."""
    files = 0
    for top in ("uploads", "results"):
        base = storage.root / top
        if not base.is_dir():
            continue
        for folder, dirnames, filenames in os.walk(base):
            dirnames.sort()
            relfolder = storage.relative(folder)
            if top == "results" and is_result_dir(relfolder):
                files += check_result_dir(storage, report, expected, relfolder, newest)
                dirnames[:] = []  # its contents were handled as a whole
                continue
            for name in sorted(filenames):
                files += 1
                relpath = f"{relfolder}/{name}"
                check_file(storage, report, expected, relpath, newest)
    report.scanned["files"] = files


def is_result_dir(relfolder):
    parts = relfolder.split("/")
    return len(parts) == 3 and parts[0] == "results"


def check_result_dir(storage, report, expected, relfolder, newest):
    """One image's result folder: results/YYYYMMDD/<img_unique_id>/."""
    path = storage.root / relfolder
    contents = sorted(p for p in path.rglob("*") if p.is_file())
    if relfolder not in expected.image_dirs and relfolder not in expected.item_dirs:
        if modified(path) <= newest and all(modified(p) <= newest for p in contents):
            names = [p.name for p in contents]
            detail = f"{len(names)} file(s): {', '.join(names[:6])}" if names else "empty"
            report.problems.append(Problem("orphan_dir", relfolder, detail))
        return len(contents)
    for file in contents:
        check_file(storage, report, expected, storage.relative(file), newest)
    return len(contents)


def check_file(storage, report, expected, relpath, newest):
    name = relpath.rsplit("/", 1)[-1]
    if relpath in expected.files:
        return
    if modified(storage.root / relpath) > newest:
        return
    if name.startswith(TEMP_PREFIX):
        report.problems.append(Problem("temp_file", relpath))
    elif name.startswith("."):
        # Not a result: the agent never writes dotfiles (uploads/.gitkeep is tracked).
        return
    elif relpath in expected.purged_files:
        return  # reported once per image as purged_file_present
    else:
        report.problems.append(Problem("orphan_file", relpath))


def modified(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# ---- repair --------------------------------------------------------------------------------


def repair(storage, report):
    """Fix the repairable problems of `report`; returns what was done."""
    done = Repairs()
    now = utc_now()
    for problem in report.problems:
        handler = REPAIRS.get(problem.kind)
        if handler is None:
            done.skipped.append(f"{problem.kind}: {problem.subject}")
            continue
        handler(storage, problem, now, done)
    commit_or_raise()
    return done


def remove_file(storage, problem, now, done):
    storage.remove(problem.subject)
    done.actions[f"removed {problem.kind}"] += 1


def remove_dir(storage, problem, now, done):
    storage.remove(problem.subject)  # only ever a results/<day>/<id> folder
    done.actions["removed orphan_dir"] += 1


def mark_files_missing(storage, problem, now, done):
    db.session.execute(
        update(Image).where(Image.img_unique_id == problem.subject).values(files_missing_at=now)
    )
    done.actions["marked image files_missing_at"] += 1


def clear_missing_mark(storage, problem, now, done):
    db.session.execute(
        update(Image).where(Image.img_unique_id == problem.subject).values(files_missing_at=None)
    )
    done.actions["cleared files_missing_at (files are back)"] += 1


def remove_purged_files(storage, problem, now, done):
    image = db.session.get(Image, problem.subject)
    if image is not None and image.purged_at is not None:
        storage.remove(*image_paths(image), result_dir_of(image))
        done.actions["removed files of purged image"] += 1


def item_id_of(problem):
    return int(problem.subject.split()[1])


def fail_dangling_item(storage, problem, now, done):
    """A done item without its image row: failed again, retryable from its input."""
    item = db.session.get(BatchItem, item_id_of(problem))
    if item is None or item.state != "done":
        return
    if item.img_unique_id and db.session.get(Image, item.img_unique_id) is not None:
        return
    if item.result_dir:
        storage.remove(*(f"{item.result_dir}/{name}" for name in RESULT_FILES))
    if item.input_path and exists(storage, item.input_path):
        mark_item_failed(
            item,
            RESULT_MISSING,
            "fsck found this file marked done without its stored result; retry the batch "
            "to analyse it again.",
            now,
        )
        done.actions["marked done item failed (retryable)"] += 1
    else:
        mark_input_lost(item, now)
        done.actions["marked done item failed (input lost)"] += 1


def record_lost_input(storage, problem, now, done):
    item = db.session.get(BatchItem, item_id_of(problem))
    if item is None or item.state == "done":
        return
    if item.input_path and exists(storage, item.input_path):
        return  # it came back meanwhile
    mark_input_lost(item, now)
    done.actions["recorded lost input of batch item"] += 1


def mark_item_failed(item, code, message, now):
    item.state = "failed"
    item.error_code = code
    item.error_message = message
    item.finished_at = now


def mark_input_lost(item, now):
    mark_item_failed(
        item,
        INPUT_MISSING,
        f"The saved input {item.input_path} is missing from storage (found by fsck); this "
        "file cannot be retried. Upload it again, or restore the file from backup and retry.",
        now,
    )


REPAIRS = {
    "orphan_file": remove_file,
    "temp_file": remove_file,
    "orphan_dir": remove_dir,
    "missing_file": mark_files_missing,
    "stale_missing_mark": clear_missing_mark,
    "purged_file_present": remove_purged_files,
    "done_without_image": fail_dangling_item,
    "failed_input_missing": record_lost_input,
    "unfinished_input_missing": record_lost_input,
}


# ---- retention ----------------------------------------------------------------------------


@dataclass
class PurgeResult:
    cutoff: object
    images: int = 0
    files: int = 0
    bytes: int = 0
    dry_run: bool = False

    def to_dict(self):
        return {
            "cutoff": self.cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "images": self.images,
            "files": self.files,
            "bytes": self.bytes,
            "dry_run": self.dry_run,
        }


def purge_older_than(storage, days, *, dry_run=False, chunk=200, now=None):
    """Delete the files of images analysed more than `days` ago; keep their rows.

    Rows are marked `purged_at` (and `stored_bytes` 0) and committed before their
    files go, a chunk at a time: if the job dies between the two, the files are
    left over and `fsck --repair` removes them; a row never claims files that
    are gone without saying so.
    """
    now = now or utc_now()
    result = PurgeResult(cutoff=now - timedelta(days=days), dry_run=dry_run)
    after = None  # keyset: (timestamp, img_unique_id) of the last row seen
    while True:
        query = select(Image).where(Image.timestamp < result.cutoff, Image.purged_at.is_(None))
        if after is not None:
            query = query.where(
                or_(
                    Image.timestamp > after[0],
                    and_(Image.timestamp == after[0], Image.img_unique_id > after[1]),
                )
            )
        images = db.session.scalars(
            query.order_by(Image.timestamp, Image.img_unique_id).limit(chunk)
        ).all()
        if not images:
            return result
        after = (images[-1].timestamp, images[-1].img_unique_id)
        doomed = []
        for image in images:
            paths = [p for p in image_paths(image) if p and exists(storage, p)]
            result.images += 1
            result.files += len(paths)
            result.bytes += sum(size_of(storage, p) for p in paths)
            doomed.append((paths, result_dir_of(image)))
            if not dry_run:
                image.purged_at = now
                image.stored_bytes = 0
        if dry_run:
            db.session.rollback()
            continue
        commit_or_raise()
        for paths, folder in doomed:
            storage.remove(*paths, folder)
        log.info("retention: purged the files of %d image(s)", len(images))


def size_of(storage, relpath):
    try:
        return storage.size(relpath)
    except OSError:
        return 0


class ImagesPurged(ApiError):
    status = 410
    code = "IMAGES_PURGED"


def refuse_if_purged(image):
    """Downloads of a purged image answer 410 Gone; its rows stay readable."""
    if image.purged_at is None:
        return
    when = image.purged_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    raise ImagesPurged.of(
        "IMAGES_PURGED",
        when=when,
        img_id=image.img_unique_id,
        details={"img_unique_id": image.img_unique_id, "purged_at": when},
    )
