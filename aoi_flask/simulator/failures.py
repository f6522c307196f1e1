"""Deciding and shaping the failures the simulator injects."""

from __future__ import annotations

import json
import random
import threading

from .options import SimulatorOptions

IMAGE_FIELDS = ("overlay_image", "combined_image", "mask_image")


class FailurePicker:
    """Thread-safe draw of "fail or not, and how" per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._seeded_from: tuple[SimulatorOptions, int] | None = None

    def pick(self, options: SimulatorOptions) -> str | None:
        with self._lock:
            self._reseed_if_asked(options)
            kinds = list(options.failure_kinds)
            if options.failure_rate <= 0 or not kinds:
                return None
            if self._rng.random() >= options.failure_rate:
                return None
            return self._rng.choice(kinds)

    def _reseed_if_asked(self, options: SimulatorOptions) -> None:
        # A seed assignment (or a new options object) restarts the sequence,
        # so whoever sets a seed gets reproducible failures from then on.
        last = self._seeded_from
        if last is None or last[0] is not options or last[1] != options.seed_generation:
            self._rng = random.Random(options.seed)
            self._seeded_from = (options, options.seed_generation)


def malformed_body(answer: dict) -> str:
    """The answer's JSON text cut in the middle: never parseable."""
    text = json.dumps(answer, ensure_ascii=False)
    return text[: max(1, len(text) // 2)]


def truncate_images(answer: dict) -> dict:
    """Valid JSON whose base64 images (top level or per batch item) are halved."""
    damaged = dict(answer)
    for name in IMAGE_FIELDS:
        if isinstance(damaged.get(name), str):
            damaged[name] = damaged[name][: len(damaged[name]) // 2]
    if isinstance(damaged.get("results"), list):
        damaged["results"] = [truncate_images(item) for item in damaged["results"]]
    return damaged
