"""Per-app mutable state of a running simulator."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import weakref
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


class SimulatorState:
    """Options, current model, failure RNG and the results folder of one app."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.current_model = DEFAULT_MODEL
        self.failures = FailurePicker()
        self.stopping = threading.Event()
        self._results_dir: Path | None = None
        self._results_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return MODELS[self.current_model]["name"]

    def wait(self, seconds: float) -> None:
        """Sleep that ends early once the server is shutting down."""
        self.stopping.wait(seconds)

    def existing_results_dir(self) -> Path | None:
        return self._results_dir

    def results_dir(self) -> Path:
        with self._results_lock:
            if self._results_dir is None:
                path = Path(tempfile.mkdtemp(prefix="aoi-simulator-results-"))
                # Removed when the app is collected or the process exits.
                weakref.finalize(self, shutil.rmtree, path, True)
                self._results_dir = path
            return self._results_dir

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
