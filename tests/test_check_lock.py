"""scripts/check_lock.py: the venv must hold exactly the locked versions."""

import importlib.util
from pathlib import Path

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
