"""Per-app mutable state of a running simulator."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from .failures import FailurePicker
from .options import SimulatorOptions

MODELS = {
    "segformer": {
        "name": "segformer-simulator (classical image processing, no weights)",
        "description": "SegFormer stand-in: background estimation, thresholds, morphology",
    },
    "oneformer": {
        "name": "oneformer-simulator (classical image processing, no weights)",
        "description": "OneFormer stand-in: the same classical pipeline under another name",
    },
}
DEFAULT_MODEL = "segformer"


class CallCounter:
    """Model calls in flight, the most seen at once, and the total: what a test of
    a concurrency cap reads (GET /_simulator/calls). It also keeps when each call
    ran (wall-clock start and end, the last TIMELINE_LENGTH calls), so a benchmark
    can see when the service sat idle."""

    TIMELINE_LENGTH = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = self.peak = self.total = 0
        self._running = threading.local()
        self._timeline: deque = deque(maxlen=self.TIMELINE_LENGTH)

    def __enter__(self) -> None:
        self._running.started = time.time()
        with self._lock:
            self.active += 1
            self.total += 1
            self.peak = max(self.peak, self.active)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.active -= 1
            self._timeline.append((self._running.started, time.time()))

    def snapshot(self) -> dict:
        with self._lock:
            return {"active": self.active, "max_active": self.peak, "total": self.total}

    def timeline(self) -> list:
        """[start, end] of every finished call since the last reset (epoch seconds)."""
        with self._lock:
            return [list(span) for span in self._timeline]

    def reset(self) -> None:
        with self._lock:
            self.peak, self.total = self.active, 0
            self._timeline.clear()


class SimulatorState:
    """Options, current model, failure RNG and the results folder of one app."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.current_model = DEFAULT_MODEL
        self.failures = FailurePicker()
        self.calls = CallCounter()
        self.stopping = threading.Event()
        self._work_dir: Path | None = None
        self._results_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return MODELS[self.current_model]["name"]

    def wait(self, seconds: float) -> None:
        """Sleep that ends early once the server is shutting down."""
        self.stopping.wait(seconds)

    def existing_results_dir(self) -> Path | None:
        root = self._work_dir
        return None if root is None else root / "results"

    def work_dir(self) -> Path:
        """The folder holding uploads/ and results/, made on first use."""
        with self._results_lock:
            if self._work_dir is None:
                if self.options.work_dir:
                    path = Path(self.options.work_dir)
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path = Path(tempfile.mkdtemp(prefix="aoi-simulator-"))
                    # Removed when the app is collected or the process exits.
                    weakref.finalize(self, shutil.rmtree, path, True)
                (path / "results").mkdir(exist_ok=True)
                (path / "uploads").mkdir(exist_ok=True)
                self._work_dir = path
            return self._work_dir

    def results_dir(self) -> Path:
        return self.work_dir() / "results"

    def new_batch_folder(self, batch_id: str) -> str:
        """Create a folder for one batch; returns it relative to the results folder."""
        root = self.results_dir()
        with self._results_lock:
            folder = unique_folder(root, f"batch_{batch_id}")
        return folder.relative_to(root).as_posix()

    def write_json(self, relative_path: str, data: dict) -> None:
        target = self.results_dir() / relative_path
        target.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def unique_folder(root: Path, name: str) -> Path:
    candidate, suffix = root / name, 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{name}_{suffix}"
    candidate.mkdir()
    return candidate
