"""Shared helpers of the benchmark scripts (scripts/bench_*.py, scripts/seed_history.py).

Everything here talks to 127.0.0.1 only: the simulator and the agent are started
as subprocesses on free loopback ports, and database URLs must name a loopback
host (or SQLite).
"""

from __future__ import annotations

import atexit
import io
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Databases a benchmark must never reset (the test suite's, the production default's).
PROTECTED_DATABASES = {"aoi_test", "aoi_db", "mysql", "information_schema", "performance_schema"}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---- processes ----------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """A subprocess serving HTTP on a loopback port; stopped by its own pid."""

    def __init__(self, name, argv, port, env=None, log_dir=None, clean=False):
        """`clean`: none of this shell's AOI_* variables, only `env`'s."""
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        log_dir = Path(log_dir or tempfile.gettempdir())
        self.log_path = log_dir / f"{name}-{port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**inherited_environ(clean), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self):
        return self.process.pid

    def wait_ready(self, path="/health", timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; log: {self.log_path}\n{self.log()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code < 500:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s; log: {self.log_path}")

    def cpu_seconds(self):
        """User + system CPU time of the process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def log(self, tail=4000):
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def inherited_environ(clean=False):
    if not clean:
        return dict(os.environ)
    return {key: value for key, value in os.environ.items() if not key.startswith("AOI_")}


def start_simulator(latency, log_dir=None):
    port = free_port()
    argv = [sys.executable, "-m", "aoi_flask.simulator", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--latency", str(latency)]
    return Service("simulator", argv, port, log_dir=log_dir).wait_ready("/health")


def agent_env(database_url, storage_root, model_url, **extra):
    env = {
        "AOI_DATABASE_URL": database_url,
        "AOI_STORAGE_ROOT": str(storage_root),
        "AOI_MODEL_SERVICE_URL": model_url,
        "AOI_API_KEYS": "",
        "AOI_LOG_LEVEL": "WARNING",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def start_agent(env, threads=8, log_dir=None, clean=False):
    """`python run.py` (waitress) with the given AOI_* settings (`clean`: only those)."""
    port = free_port()
    argv = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--threads", str(threads)]
    service = Service("agent", argv, port, env=env, log_dir=log_dir, clean=clean)
    return service.wait_ready("/health")


# ---- memory -----------------------------------------------------------------------------


def proc_status_kb(pid, field):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class RssSampler:
    """Samples VmRSS of a process every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.baseline_kb = proc_status_kb(pid, "VmRSS")
        self.peak_kb = self.baseline_kb
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = proc_status_kb(self.pid, "VmRSS")
            except (OSError, KeyError):
                return
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self):
        return (self.peak_kb - self.baseline_kb) / 1024


# ---- databases -----------------------------------------------------------------------------


def check_loopback(url):
    """Refuse any database that is not SQLite or on the loopback interface."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed
    if (parsed.host or "127.0.0.1") not in LOOPBACK_HOSTS:
        raise SystemExit(f"refusing database host {parsed.host!r}: loopback only")
    return parsed


def is_mysql(url):
    return url.startswith("mysql")


def reset_mysql_database(url):
    """DROP and CREATE the scratch database a MariaDB URL names (never a protected one)."""
    import pymysql

    parsed = check_loopback(url)
    name = parsed.database
    if not name or name in PROTECTED_DATABASES or name.startswith("aoi_test"):
        raise SystemExit(f"refusing to reset database {name!r}; use a scratch one (aoi_bench)")
    conn = pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def prepare_database(url, work):
    """The benchmark's database: a fresh SQLite file in `work`, or the given MariaDB
    database emptied; migrated either way."""
    if url is None:
        url = f"sqlite:///{work / 'aoi.sqlite3'}"
    elif is_mysql(url):
        reset_mysql_database(url)
    check_loopback(url)
    migrate(url)
    return url


def make_app(url, storage_root=None):
    """An app on `url` (for migrations and direct database work)."""
    from aoi_flask import create_app
    from aoi_flask.config import Config

    if storage_root is None:
        storage_root = tempfile.mkdtemp(prefix="aoi-bench-unused-")
        atexit.register(shutil.rmtree, storage_root, True)
    return create_app(Config, SQLALCHEMY_DATABASE_URI=url, STORAGE_ROOT=str(storage_root))


def migrate(url):
    """flask_migrate.upgrade on `url`, to every head (works on a branched history too)."""
    from flask_migrate import upgrade

    from aoi_flask.extensions import db

    storage = tempfile.mkdtemp(prefix="aoi-bench-unused-")
    try:
        app = make_app(url, storage)
        with app.app_context():
            upgrade(directory=str(MIGRATIONS), revision="heads")
            db.engine.dispose()
        app.extensions["aoi"].batches.shutdown()
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def mysql_version(url):
    from sqlalchemy import create_engine, text

    if not is_mysql(url):
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "MariaDB/MySQL " + conn.execute(text("SELECT VERSION()")).scalar()
    finally:
        engine.dispose()


# ---- inputs --------------------------------------------------------------------------------


def wafer_image(rng, size=256, spots=4, fmt="PNG"):
    """A small greyscale 'wafer' image: noisy grey field with a few dark spots
    (what the simulator reports as defects)."""
    height = width = size
    field = rng.normal(150, 3, (height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(spots):
        cy, cx = rng.uniform(20, height - 20), rng.uniform(20, width - 20)
        ry, rx = rng.uniform(2, 6), rng.uniform(2, 6)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        field[inside] = rng.uniform(40, 80)
    pixels = np.clip(field, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(pixels, "L").save(buffer, "PNG", compress_level=6)
    else:
        Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def wafer_images(count, size=256, seed=7):
    """`count` (name, bytes) pairs, PNG and JPEG alternating."""
    rng = np.random.default_rng(seed)
    files = []
    for index in range(count):
        fmt = "PNG" if index % 2 == 0 else "JPEG"
        spots = int(rng.integers(2, 7))
        suffix = "png" if fmt == "PNG" else "jpg"
        files.append((f"wafer_{index:04d}.{suffix}", wafer_image(rng, size, spots, fmt)))
    return files


def multipart_files(files, field="images"):
    mime = {"png": "image/png", "jpg": "image/jpeg"}
    return [(field, (name, data, mime[name.rsplit(".", 1)[1]])) for name, data in files]


# ---- reporting -----------------------------------------------------------------------------


def percentile(values, fraction):
    """Nearest-rank percentile (p50 = median of the sorted samples)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, int(np.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def machine_line(database_url=None):
    cores = os.cpu_count()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    parts = [
        f"machine: {cores} cores, {mem_gb:.0f} GB RAM",
        f"Python {platform.python_version()}",
        "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    ]
    if database_url:
        parts.append(mysql_version(database_url))
    return "; ".join(parts)


def verdict(ok):
    return "MET" if ok else "MISSED"


def seeded_random(seed):
    return random.Random(seed)
