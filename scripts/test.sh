#!/usr/bin/env bash
# Run the whole test suite twice: on SQLite, then on MariaDB/MySQL.
# Prepares a fresh machine first: a virtual environment (.venv) holding exactly the
# locked packages of requirements-dev.txt, Chromium for the browser tests, a running
# MariaDB server and Redis server (started, or installed from Debian's packages and
# started) and a test database. Nothing is installed into the caller's Python.
#
#   AOI_TEST_MYSQL_URL  the MariaDB/MySQL database to test against
#                       (default mysql+pymysql://root@127.0.0.1:3306/aoi_test?charset=utf8mb4)
#   AOI_TEST_REDIS_URL  the Redis database of the distributed-mode tests
#                       (default redis://127.0.0.1:6379/15; keys under AOI_TEST_REDIS_PREFIX,
#                       default aoi-test:, deleted after each test)
#   AOI_VENV            the virtual environment to use (default .venv)
#   extra arguments are passed to pytest, e.g. scripts/test.sh -k upload
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${AOI_VENV:-.venv}
PYTHON=$VENV/bin/python
MYSQL_URL=${AOI_TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/aoi_test?charset=utf8mb4}
export AOI_TEST_REDIS_URL=${AOI_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
# Here Redis is there (ensure_redis): its tests fail instead of skipping when it is not.
export AOI_TEST_REQUIRE_REDIS=1
REPORTS=test-reports

log() { printf '\n==> %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: Debian package(s) $* — install them (sudo apt-get install $*) and run again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  if [ -x "$PYTHON" ] && "$PYTHON" -m pip --version >/dev/null 2>&1; then return; fi
  log "creating the virtual environment $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian/Ubuntu ship venv's pip bootstrap separately.
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
}

install_packages() {
  log "installing the locked packages (requirements-dev.txt) into $VENV"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  # Remove anything the lock does not name, so the venv is exactly the tested set.
  "$PYTHON" -m piptools sync --quiet --pip-args "--disable-pip-version-check" requirements-dev.txt
  "$PYTHON" scripts/check_lock.py requirements-dev.txt
}

ensure_chromium() {
  # Browser tests drive Debian's Chromium through Playwright; never a browser download.
  if [ -x /usr/bin/chromium ]; then return; fi
  log "installing Chromium (Debian package chromium)"
  apt_install chromium
}

mariadb_answers() {
  "$PYTHON" - "$MYSQL_URL" <<'PY' >/dev/null 2>&1
import sys
from sqlalchemy.engine import make_url
import pymysql
url = make_url(sys.argv[1])
pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                password=url.password or "", connect_timeout=2).close()
PY
}

redis_answers() {
  "$PYTHON" -c "import redis; redis.Redis(host='127.0.0.1', port=6379, socket_timeout=2).ping()" \
    >/dev/null 2>&1
}

ensure_redis() {
  # The distributed-mode tests (Celery broker, cluster-wide model slots) use Redis.
  if redis_answers; then return; fi
  if ! command -v redis-server >/dev/null; then
    log "installing Redis (Debian package redis-server)"
    apt_install redis-server
  fi
  log "starting Redis on 127.0.0.1:6379 (keeps nothing on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 30); do
    if redis_answers; then return; fi
    sleep 1
  done
  echo "Redis did not start within 30 s" >&2
  exit 1
}

ensure_mariadb() {
  if mariadb_answers; then return; fi
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing MariaDB (Debian package mariadb-server)"
    apt_install mariadb-server
  fi
  log "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  if command -v start-stop-daemon >/dev/null; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  else
    nohup /usr/sbin/mariadbd --user=mysql >/dev/null 2>&1 &
  fi
  for _ in $(seq 60); do
    if mariadb_answers; then return; fi
    # A fresh Debian install lets root in through the socket only: allow TCP with no password.
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket \
      OR mysql_native_password USING PASSWORD('')" >/dev/null 2>&1 || true
    sleep 1
  done
  echo "MariaDB did not start within 60 s" >&2
  exit 1
}

create_test_database() {
  "$PYTHON" - "$MYSQL_URL" <<'PY'
import sys
from sqlalchemy.engine import make_url
import pymysql
url = make_url(sys.argv[1])
conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                       password=url.password or "")
with conn.cursor() as cursor:
    cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4")
conn.close()
PY
}

run_suite() {
  local name=$1
  shift
  log "test suite on $name"
  "$@" "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml="$REPORTS/$name.xml" "${PYTEST_ARGS[@]}"
}

PYTEST_ARGS=("$@")
ensure_venv
install_packages
ensure_chromium
ensure_redis
ensure_mariadb
create_test_database
rm -rf "$REPORTS" && mkdir -p "$REPORTS"

status=0
run_suite sqlite env -u AOI_TEST_DATABASE_URL || status=1
run_suite mariadb env AOI_TEST_DATABASE_URL="$MYSQL_URL" || status=1

"$PYTHON" scripts/test_summary.py "$REPORTS"/sqlite.xml "$REPORTS"/mariadb.xml || status=1
exit $status
