"""Where one model call keeps its input and results on disk, as the real service does.

The real service saves each input as ``uploads/<YYYYMMDD>/<stamp>_<name>`` and
its results as ``results/<YYYYMMDD>/<stamp>/<stamp>_<stem>_<kind>.png`` (stamp
to the second, name = the sanitised uploaded filename), then reads them back
to build its answer. Two calls in the same second with the same name therefore
share paths and can answer with each other's analysis or images; the
simulator keeps that hazard on purpose (``collide``) so clients are tested
against it. ``unique`` adds a per-call token to the name and removes it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

RESULT_KINDS = ("overlay", "combined", "mask")

# Paths in use by calls in flight (a same-named call of the same second shares
# them). A file goes only when its last user is done, so collisions behave as
# in the real service, which never deletes, while disk use stays bounded.
_IN_USE: Counter[Path] = Counter()
_IN_USE_LOCK = threading.Lock()


class CallFiles:
    """The paths of one call; every file it wrote is removed by ``clean_up``."""

    def __init__(self, root: Path, filename: str, when: datetime, unique: bool) -> None:
        self.stamp = when.strftime("%Y%m%d_%H%M%S")
        day = self.stamp[:8]
        name = f"{uuid.uuid4().hex[:12]}_{filename}" if unique else filename
        self.input_path = root / "uploads" / day / f"{self.stamp}_{name}"
        self.results_folder = root / "results" / day / self.stamp
        self._stem = Path(name).stem
        self._files = [self.input_path, *(self.result_path(kind) for kind in RESULT_KINDS)]
        with _IN_USE_LOCK:
            # Folders are counted too, so a finishing call never removes the
            # results folder of its second while another call is about to write.
            _IN_USE.update([*self._files, self.results_folder])
            self.input_path.parent.mkdir(parents=True, exist_ok=True)
            self.results_folder.mkdir(parents=True, exist_ok=True)

    def result_path(self, kind: str) -> Path:
        return self.results_folder / f"{self.stamp}_{self._stem}_{kind}.png"

    def save_input(self, data: bytes) -> None:
        self._write(self.input_path, data)

    def read_input(self) -> bytes:
        return self.input_path.read_bytes()

    def save_results(self, pngs: dict[str, bytes]) -> None:
        for kind, data in pngs.items():
            self._write(self.result_path(kind), data)

    def read_results(self) -> dict[str, bytes]:
        return {kind: self.result_path(kind).read_bytes() for kind in RESULT_KINDS}

    def _write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def clean_up(self) -> None:
        # Unlike the real service the simulator does not keep its files
        # (benchmarks send thousands of images), but only the last call using
        # a path removes it, so no call in flight finds its file gone.
        with _IN_USE_LOCK:
            _IN_USE.subtract([*self._files, self.results_folder])
            for path in self._files:
                if _IN_USE[path] <= 0:
                    del _IN_USE[path]
                    path.unlink(missing_ok=True)
            if _IN_USE[self.results_folder] <= 0:
                del _IN_USE[self.results_folder]
                with contextlib.suppress(OSError):
                    self.results_folder.rmdir()
