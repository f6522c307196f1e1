"""Shared fixtures. The suite runs on SQLite by default and on MariaDB/MySQL when
AOI_TEST_DATABASE_URL names one (scripts/test.sh runs both)."""

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from flask_migrate import upgrade
from helpers import echo, png_bytes
from PIL import Image
from sqlalchemy import text

from aoi_flask import create_app, samples
from aoi_flask.config import TestingConfig
from aoi_flask.extensions import db

DATA = Path(__file__).parent / "data"
MIGRATIONS = Path(__file__).parent.parent / "migrations"
DATABASE_URL = os.environ.get("AOI_TEST_DATABASE_URL", "")
ON_MYSQL = DATABASE_URL.startswith("mysql")
MODEL_URL = "http://127.0.0.1:18080"
# Distributed-mode tests: their own Redis database and key prefix, cleaned up after.
REDIS_URL = os.environ.get("AOI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIS_PREFIX = os.environ.get("AOI_TEST_REDIS_PREFIX", "aoi-test:")
# scripts/test.sh sets it: there, a missing Redis fails the Redis tests instead of skipping them.
REQUIRE_REDIS = os.environ.get("AOI_TEST_REQUIRE_REDIS") == "1"
TABLES = (
    "review_log",
    "region_reviews",
    "batch_items",
    "batches",
    "regions",
    "classes",
    "images",
    "stats_days",
    "stats_day_classes",
)


def pytest_report_header(config):
    return f"database backend: {'MariaDB/MySQL' if ON_MYSQL else 'SQLite'}"


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """Migrate once per session; each test then gets a fresh copy (SQLite) or
    emptied tables (MariaDB)."""
    if ON_MYSQL:
        url = DATABASE_URL
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'template.sqlite3'}"
    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=url,
        STORAGE_ROOT=str(tmp_path_factory.mktemp("unused-storage")),
    )
    with app.app_context():
        if ON_MYSQL:
            drop_all_tables()
        upgrade(directory=str(MIGRATIONS))
        db.engine.dispose()
    return url


def drop_all_tables():
    with db.engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for (name,) in conn.execute(text("SHOW TABLES")).fetchall():
            conn.execute(text(f"DROP TABLE `{name}`"))
        conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


def fresh_database_url(migrated_database, tmp_path):
    if ON_MYSQL:
        return migrated_database
    template = Path(migrated_database.removeprefix("sqlite:///"))
    target = tmp_path / "aoi.sqlite3"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


def empty_tables():
    with db.engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def storage_root(tmp_path):
    return tmp_path / "storage"


@pytest.fixture
def make_app(migrated_database, tmp_path, storage_root):
    """Build an app on a fresh database; settings may be overridden per test."""
    made = []

    def factory(**overrides):
        settings = {
            "SQLALCHEMY_DATABASE_URI": fresh_database_url(migrated_database, tmp_path),
            "STORAGE_ROOT": str(storage_root),
            "MODEL_SERVICE_URL": MODEL_URL,
            **overrides,
        }
        app = create_app(TestingConfig, **settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["aoi"].batches.shutdown()
        with app.app_context():
            if app.config["SQLALCHEMY_DATABASE_URI"] == DATABASE_URL and ON_MYSQL:
                empty_tables()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test alone (REDIS_URL); its keys are deleted after."""
    import uuid

    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if REQUIRE_REDIS:
            pytest.fail(f"no Redis at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"{REDIS_PREFIX}{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# ---- the recorded model answer ---------------------------------------------------


@pytest.fixture(scope="session")
def sample_input():
    return (DATA / "segformer_input.jpeg").read_bytes()


@pytest.fixture(scope="session")
def sample_analysis_bytes():
    return samples.sample_analysis_bytes()


@pytest.fixture(scope="session")
def sample_images(sample_input):
    """mask: the real sample; overlay and combined: built like the service builds them."""
    mask_png = (DATA / "sample_mask.png").read_bytes()
    grey = np.array(Image.open(io.BytesIO(sample_input)).convert("RGB"))
    mask = np.array(Image.open(io.BytesIO(mask_png)).convert("RGB"))
    painted = mask.any(axis=2)
    overlay = grey.copy()
    overlay[painted] = mask[painted]
    return {
        "mask": mask_png,
        "overlay": png_bytes(overlay),
        "combined": png_bytes(np.hstack([grey, overlay])),
    }


@pytest.fixture(scope="session")
def sample_answer(sample_images, sample_analysis_bytes):
    """The model service's answer for the sample input (SEGFORMER_SERVICE.md)."""
    return {
        **samples.sample_service()["upload"],
        "overlay_image": base64.b64encode(sample_images["overlay"]).decode(),
        "combined_image": base64.b64encode(sample_images["combined"]).decode(),
        "mask_image": base64.b64encode(sample_images["mask"]).decode(),
        "analysis_results": json.loads(sample_analysis_bytes),
    }


MODEL_INFO = samples.sample_service()["model_current"]
MODEL_HEALTH = samples.sample_service()["health"]


@pytest.fixture
def model_service(requests_mock, sample_answer):
    """A model service that answers with the recorded sample (requests-mock)."""
    requests_mock.post(f"{MODEL_URL}/upload", json=echo(sample_answer))
    requests_mock.get(f"{MODEL_URL}/api/model/current", json=MODEL_INFO)
    requests_mock.get(f"{MODEL_URL}/health", json=MODEL_HEALTH)
    return requests_mock
