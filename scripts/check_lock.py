"""Check that this Python environment holds exactly the versions a lock file pins.

    .venv/bin/python scripts/check_lock.py requirements-dev.txt

Exits 1, listing the differences, when a locked package is missing or at another
version, or when the environment holds a package the lock does not name.
"""

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalised(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_path):
    pins = {}
    for line in Path(lock_path).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[normalised(match.group(1))] = match.group(2)
    return pins


def installed_versions():
    return {normalised(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def differences(pins, installed):
    problems = [
        f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
        for name, version in sorted(pins.items())
        if installed.get(name) != version
    ]
    problems += [
        f"{name}: installed {version}, not in the lock"
        for name, version in sorted(installed.items())
        if name not in pins
    ]
    return problems


def main(lock_path):
    pins = locked_versions(lock_path)
    problems = differences(pins, installed_versions())
    if problems:
        print(f"{sys.prefix} differs from {lock_path}:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{sys.prefix}: exactly the {len(pins)} packages of {lock_path}, at the locked versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements-dev.txt"))
