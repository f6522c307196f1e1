"""Run-time options of the simulator; the running app reads them per request."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

FAILURE_KINDS = ("500", "503", "timeout", "malformed", "truncated", "success_false")


@dataclass
class SimulatorOptions:
    """How the simulated model service behaves.

    latency: minimum total service time per image in seconds; only the part
        not already spent on real processing is slept, so benchmarks see a
        fixed model time.
    failure_rate: probability (0..1) that an upload request fails.
    failure_kinds: the failures to pick from, uniformly (see FAILURE_KINDS).
    timeout_seconds: how long a "timeout" failure hangs before answering.
    model_loaded: False makes uploads and /api/model/current answer 503.
    seed: seed of the failure RNG (None = unpredictable).
    collide: like the real service, file each input and its results by
        second + uploaded filename and read them back from there, so two
        same-named calls in the same second can get each other's answer.
        False adds a unique token to those file names (no collisions).
    collision_delay: seconds slept between saving the input and reading it
        back; widens the race window so tests can make a collision certain.
    work_dir: folder holding uploads/ and results/ (None = a temp folder,
        removed when the app goes away); read when the folder is first used.
    """

    latency: float = 0.0
    failure_rate: float = 0.0
    failure_kinds: list[str] = field(default_factory=lambda: list(FAILURE_KINDS))
    timeout_seconds: float = 30.0
    model_loaded: bool = True
    seed: int | None = None
    collide: bool = True
    collision_delay: float = 0.0
    work_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def __setattr__(self, name: str, value) -> None:
        # Every assignment of a seed (even the same value) counts as a
        # request to restart the failure sequence; the picker watches this.
        if name == "seed":
            object.__setattr__(self, "seed_generation", getattr(self, "seed_generation", 0) + 1)
        object.__setattr__(self, name, value)

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field."""
        check_seconds("latency", self.latency)
        check_seconds("timeout_seconds", self.timeout_seconds)
        check_seconds("collision_delay", self.collision_delay)
        if not is_number(self.failure_rate) or not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be a number between 0 and 1")
        if not isinstance(self.failure_kinds, (list, tuple)):
            raise TypeError(f"failure_kinds must be a list drawn from {list(FAILURE_KINDS)}")
        unknown = [kind for kind in self.failure_kinds if kind not in FAILURE_KINDS]
        if unknown:
            raise ValueError(f"unknown failure kinds {unknown}; allowed: {list(FAILURE_KINDS)}")
        if not isinstance(self.model_loaded, bool):
            raise TypeError("model_loaded must be true or false")
        if not isinstance(self.collide, bool):
            raise TypeError("collide must be true or false")
        if self.work_dir is not None and not (isinstance(self.work_dir, str) and self.work_dir):
            raise TypeError("work_dir must be a folder path or null")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError("seed must be an integer or null")

    def update(self, changes: dict) -> None:
        """Apply several field changes at once, or none if any is invalid."""
        known = {item.name for item in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        candidate = SimulatorOptions(**{**self.to_dict(), **changes})
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def to_dict(self) -> dict:
        return asdict(self)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_seconds(name: str, value) -> None:
    if not is_number(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0")
