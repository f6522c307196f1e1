"""services/derived.py: migration 0005 back-fills an existing database; the upkeep and
`flask aoi reindex` are checked against brute force in tests/test_explain.py."""

from datetime import datetime, timedelta

import pytest
from conftest import DATABASE_URL, MIGRATIONS, ON_MYSQL
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aoi_flask import create_app
from aoi_flask.config import TestingConfig
from aoi_flask.extensions import db


@pytest.fixture
def scratch_url(tmp_path):
    """A database of its own (the migrations run down and up on it)."""
    if not ON_MYSQL:
        yield f"sqlite:///{tmp_path / 'migration.sqlite3'}"
        return
    url = make_url(DATABASE_URL)
    name = f"{url.database}_migration"
    server = create_engine(url.set(database=""))
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield url.set(database=name).render_as_string(hide_password=False)
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


def insert_pre_0005_rows(conn, count):
    """Rows as a database at revision 0004 holds them (no derived columns yet)."""
    start = datetime(2026, 5, 1, 6, 0, 0)
    for n in range(count):
        img_id = f"IMG{n:04d}"
        moment = start + timedelta(hours=7 * n)
        conn.execute(
            text(
                "INSERT INTO images (img_unique_id, image_height, image_width,"
                " processing_time_seconds, timestamp, input_image_path, batch_id)"
                " VALUES (:id, 10, 10, :seconds, :moment, 'in.png', :batch)"
            ),
            {"id": img_id, "seconds": 0.5 + n / 100, "moment": moment, "batch": f"B{n % 3}"},
        )
        for class_id, name in ((1, "PI_Particle"), (2, "PR_Peeling")):
            regions = (n + class_id) % 3
            conn.execute(
                text(
                    "INSERT INTO classes (class_unique_id, img_unique_id, class_id, class_name,"
                    " total_regions, total_area_pixels) VALUES (:cid, :id, :class_id, :name,"
                    " :regions, :area)"
                ),
                {
                    "cid": f"{img_id}_{class_id}",
                    "id": img_id,
                    "class_id": class_id,
                    "name": name,
                    "regions": regions,
                    "area": 10 * regions,
                },
            )
            for region in range(1, regions + 1):
                conn.execute(
                    text(
                        "INSERT INTO regions (region_unique_id, class_unique_id, img_unique_id,"
                        " region_id, centroid_x, centroid_y, bbox_x, bbox_y, bbox_width,"
                        " bbox_height, area_pixels, perimeter, major_axis, minor_axis,"
                        " circularity, aspect_ratio) VALUES (:rid, :cid, :id, :n, 1, 1, 0, 0,"
                        " 2, 2, 10, 4, 2, 1, 0.5, 2)"
                    ),
                    {
                        "rid": f"{img_id}_{class_id}_{region}",
                        "cid": f"{img_id}_{class_id}",
                        "id": img_id,
                        "n": region,
                    },
                )


def test_migration_0005_back_fills_an_existing_database(scratch_url, tmp_path, capsys):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=scratch_url, STORAGE_ROOT=str(tmp_path))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="0004")
        with db.engine.begin() as conn:
            insert_pre_0005_rows(conn, 30)
        upgrade(directory=str(MIGRATIONS), revision="0005")
        assert "reindex: 30 images" in capsys.readouterr().out  # progress
        with db.engine.connect() as conn:
            stale = conn.execute(
                text(
                    "SELECT COUNT(*) FROM regions r JOIN classes c"
                    " ON c.class_unique_id = r.class_unique_id JOIN images i"
                    " ON i.img_unique_id = r.img_unique_id WHERE r.class_id IS NULL"
                    " OR r.class_id <> c.class_id OR r.image_timestamp <> i.timestamp"
                    " OR r.batch_id <> i.batch_id"
                )
            ).scalar()
            regions = conn.execute(text("SELECT COUNT(*) FROM regions")).scalar()
            days = conn.execute(text("SELECT SUM(images), SUM(defects) FROM stats_days")).one()
            classes = conn.execute(text("SELECT SUM(regions) FROM stats_day_classes")).scalar()
            totals = conn.execute(
                text("SELECT COUNT(*) FROM images WHERE total_defects IS NULL")
            ).scalar()
        assert regions > 0 and stale == 0
        assert (int(days[0]), int(days[1])) == (30, regions) and int(classes) == regions
        assert totals == 0
        downgrade(directory=str(MIGRATIONS), revision="0004")
        upgrade(directory=str(MIGRATIONS), revision="0005")
        # One linear chain: 0006 (issue #16) follows 0005; down past both and up again.
        upgrade(directory=str(MIGRATIONS), revision="head")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("0006",)
            ]
        downgrade(directory=str(MIGRATIONS), revision="0004")
        upgrade(directory=str(MIGRATIONS), revision="head")
        db.engine.dispose()
    app.extensions["aoi"].batches.shutdown()
