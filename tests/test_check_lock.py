"""scripts/check_lock.py: the venv must hold exactly the locked versions."""

import importlib.util
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
check_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_lock)


def test_lock_pins_are_read_with_extras_and_markers(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# comment\nFlask==3.1.3\n    # via -r requirements.in\n"
        "celery[redis]==5.7.0\nzipstream_ng==1.9.0 ; python_version >= '3.8'\n-c other.txt\n"
    )
    assert check_lock.locked_versions(lock) == {
        "flask": "3.1.3",
        "celery": "5.7.0",
        "zipstream-ng": "1.9.0",
    }


def test_differences_name_missing_other_and_extra_packages():
    pins = {"flask": "3.1.3", "redis": "7.4.1", "pillow": "13.0.0"}
    installed = {"flask": "3.1.3", "redis": "7.0.0", "six": "1.16.0"}
    assert check_lock.differences(pins, installed) == [
        "pillow: locked 13.0.0, installed nothing",
        "redis: locked 7.4.1, installed 7.0.0",
        "six: installed 1.16.0, not in the lock",
    ]


def test_the_committed_locks_pin_every_input():
    runtime = check_lock.locked_versions(ROOT / "requirements.txt")
    dev = check_lock.locked_versions(ROOT / "requirements-dev.txt")
    assert {"flask", "werkzeug", "sqlalchemy", "celery", "redis", "apispec"} <= runtime.keys()
    # The dev lock is constrained by the runtime lock: one version of each package.
    assert {name: dev[name] for name in runtime} == runtime


# Debian 12's python3. A lock compiled on a later 3.11 leaves out what only
# older interpreters need (redis imports async_timeout below 3.11.3), and
# pip-sync then removes it from a Debian venv.
OLDEST_PYTHON = {"python_full_version": "3.11.2", "python_version": "3.11", "extra": ""}


def test_the_locks_hold_every_dependency_on_the_oldest_supported_python():
    missing = []
    for lock in ("requirements.txt", "requirements-dev.txt"):
        pins = check_lock.locked_versions(ROOT / lock)
        for name in pins:
            for requirement in metadata.requires(name) or []:
                needed = Requirement(requirement)
                applies = needed.marker is None or needed.marker.evaluate(OLDEST_PYTHON)
                if applies and check_lock.normalised(needed.name) not in pins:
                    missing.append(f"{lock}: {name} needs {needed}")
    assert missing == []
