#!/usr/bin/env bash
# Move the locks up: re-resolve requirements.txt and requirements-dev.txt to the newest
# versions the ranges in requirements*.in allow, then run the whole suite on them
# (scripts/test.sh installs exactly the new locks into .venv). Commit the two lock
# files when the suite is green; `git checkout requirements*.txt` undoes the upgrade.
#
#   scripts/upgrade-deps.sh                 everything to the newest allowed
#   scripts/upgrade-deps.sh -P flask        only these packages (pip-compile -P)
#   AOI_SKIP_TESTS=1 scripts/upgrade-deps.sh   re-resolve only
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${AOI_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools>=7.4,<8"

if [ $# -eq 0 ]; then UPGRADE=(--upgrade); else UPGRADE=("$@"); fi
compile() {
  "$VENV/bin/python" -m piptools compile --quiet --no-emit-find-links --no-emit-index-url \
    --strip-extras --allow-unsafe "${UPGRADE[@]}" --output-file "$2" "$1"
}
# The dev lock is constrained by the runtime lock (-c requirements.txt): runtime first.
compile requirements.in requirements.txt
compile requirements-dev.in requirements-dev.txt
git --no-pager diff --stat -- requirements.txt requirements-dev.txt || true

if [ -z "${AOI_SKIP_TESTS:-}" ]; then
  bash scripts/test.sh
fi
