"""Files on disk: inputs under `uploads/`, results under `results/`, atomic writes.

Paths in the database are relative to the storage root (POSIX separators), so
the data folder can move; a stored path is resolved and checked to lie inside
the root before it is ever read.
"""

import os
import secrets
import shutil
import string
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ApiError

MB = 1024 * 1024
ID_ALPHABET = string.ascii_uppercase + string.digits
RESULT_FILES = ("combined.png", "mask.png", "overlay.png", "analysis.json", "thumbnail.jpg")


# Writes and syncs the files of one image side by side (the GIL is released meanwhile).
WRITERS = ThreadPoolExecutor(8, thread_name_prefix="aoi-write")


class StorageError(ApiError):
    status = 507
    code = "STORAGE_ERROR"


def utc_now():
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None)


def new_image_id(moment):
    suffix = "".join(secrets.choice(ID_ALPHABET) for _ in range(6))
    return f"{moment:%Y%m%d_%H%M%S}_{suffix}"


def sync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    def __init__(self, root, *, fsync=True):
        self.root = Path(root).resolve()
        # A file acknowledged to the client must survive power loss: sync it and
        # its directory entry before the database commit (AOI_FSYNC=false skips it).
        self.fsync = fsync

    def path(self, relpath):
        """The absolute path of a stored relative path; never outside the root."""
        if not relpath:
            raise FileNotFoundError("no path stored")
        if "\x00" in str(relpath):
            raise FileNotFoundError(f"{relpath!r} contains a NUL byte")
        candidate = (self.root / relpath).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise FileNotFoundError(f"{relpath!r} is outside the storage root")
        return candidate

    def relative(self, path):
        return Path(path).relative_to(self.root).as_posix()

    def reserve_result_dir(self, moment):
        """Pick an image id and claim its result folder; mkdir is atomic, so two
        workers (threads or processes) can never get the same id."""
        day_dir = self.root / "results" / f"{moment:%Y%m%d}"
        changed = self.make_dirs(day_dir)
        while True:
            img_id = new_image_id(moment)
            try:
                (day_dir / img_id).mkdir()
            except FileExistsError:
                continue
            self.sync_dirs({*changed, day_dir})
            return img_id, self.relative(day_dir / img_id)

    def input_relpath(self, moment, img_id, name):
        return f"uploads/{moment:%Y%m%d}/{img_id}_{name}"

    def write_atomic(self, relpath, data):
        self.write_files({relpath: data})
        return relpath

    def write_files(self, files):
        """Write {relpath: bytes} atomically: each to a temporary file, synced (side by
        side: the disk merges concurrent syncs into one journal commit), then all
        renamed, then each folder touched synced once. When it returns, every file and
        its directory entry are on disk (with fsync on)."""
        writes, changed = {}, set()
        for relpath, data in files.items():
            target = self.path(relpath)
            changed |= self.make_dirs(target.parent)
            writes[target] = WRITERS.submit(self.write_temp, target, data)
        failures = [write.exception() for write in writes.values() if write.exception()]
        staged = [
            (write.result(), target) for target, write in writes.items() if not write.exception()
        ]
        try:
            if failures:
                raise failures[0]
            for tmp, target in staged:
                os.replace(tmp, target)
                changed.add(target.parent)
            self.sync_dirs(changed)
        except BaseException:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        return list(files)

    def write_temp(self, target, data):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def make_dirs(self, folder):
        """mkdir -p; returns the folders whose entries changed (to be synced)."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        changed = set()
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            changed.add(path.parent)
        return changed

    def sync_dirs(self, folders):
        if self.fsync:
            for folder in sorted(folders):
                sync_dir(folder)

    def remove(self, *relpaths):
        for relpath in relpaths:
            if not relpath:
                continue
            try:
                target = self.path(relpath)
            except FileNotFoundError:
                continue
            if target.is_dir():
                # Only an image's own result folder, never the root, uploads/,
                # results/ or a whole day (whatever a damaged row says).
                if self.is_result_dir(target):
                    shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)

    def is_result_dir(self, target):
        parts = Path(self.relative(target)).parts
        return len(parts) == 3 and parts[0] == "results"

    def size(self, relpath):
        return self.path(relpath).stat().st_size

    def writable(self):
        probe = self.root / "results"
        return probe.is_dir() and os.access(probe, os.W_OK)

    def free_bytes(self):
        return shutil.disk_usage(self.root).free

    def ensure_layout(self):
        for folder in ("uploads", "results"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
