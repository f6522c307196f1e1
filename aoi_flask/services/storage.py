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


class StagedFiles:
    """Files being written to temporary names by Storage.stage_files()."""

    def __init__(self, storage, relpaths, writes, changed):
        self.storage = storage
        self.relpaths = relpaths
        self._writes = writes  # target path -> future of its temporary file
        self._changed = changed

    def _finished(self):
        """Wait for every write: (the first failure or None, [(temp, target)] written)."""
        failures = [write.exception() for write in self._writes.values() if write.exception()]
        staged = [
            (write.result(), target)
            for target, write in self._writes.items()
            if not write.exception()
        ]
        return (failures[0] if failures else None), staged

    def commit(self):
        failure, staged = self._finished()
        changed = set(self._changed)
        try:
            if failure is not None:
                raise failure
            for tmp, target in staged:
                os.replace(tmp, target)
                changed.add(target.parent)
            self.storage.sync_dirs(changed)
        except BaseException:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        return self.relpaths

    def discard(self):
        _, staged = self._finished()
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


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
        """Write {relpath: bytes} atomically; when it returns, every file and its
        directory entry are on disk (with fsync on)."""
        return self.stage_files(files).commit()

    def stage_files(self, files):
        """Start writing {relpath: bytes}, each to a temporary file beside its target,
        synced, side by side in the background (the disk merges concurrent syncs into
        one journal commit). `commit()` then renames them all and syncs each folder
        touched once; `discard()` removes them. Nothing is in place before commit()."""
        writes, changed = {}, set()
        for relpath, data in files.items():
            target = self.path(relpath)
            changed |= self.make_dirs(target.parent)
            writes[target] = WRITERS.submit(self.write_temp, target, data)
        return StagedFiles(self, list(files), writes, changed)

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
