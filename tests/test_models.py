"""The schema as specified (DATABASE_SCHEMA.md), cascades, and exact floats."""

from datetime import datetime

import pytest
from conftest import ON_MYSQL
from sqlalchemy import inspect, text

from aoi_flask.extensions import db
from aoi_flask.models import DefectClass, Image, Region

SPEC_COLUMNS = {
    "images": {
        "img_unique_id": ("varchar", False),
        "image_height": ("int", False),
        "image_width": ("int", False),
        "processing_time_seconds": ("double", False),
        "timestamp": ("datetime", False),
        "input_image_path": ("varchar", False),
        "result_image_1_path": ("varchar", True),
        "result_image_2_path": ("varchar", True),
        "result_image_3_path": ("varchar", True),
        "created_at": ("datetime", True),
    },
    "classes": {
        "class_unique_id": ("varchar", False),
        "img_unique_id": ("varchar", False),
        "class_id": ("int", False),
        "class_name": ("varchar", False),
        "total_regions": ("int", False),
        "total_area_pixels": ("int", False),
        "created_at": ("datetime", True),
    },
    "regions": {
        "region_unique_id": ("varchar", False),
        "class_unique_id": ("varchar", False),
        "img_unique_id": ("varchar", False),
        "region_id": ("int", False),
        **{name: ("double", False) for name in ("centroid_x", "centroid_y")},
        **{name: ("int", False) for name in ("bbox_x", "bbox_y", "bbox_width", "bbox_height")},
        "area_pixels": ("int", False),
        **{
            name: ("double", False)
            for name in ("perimeter", "major_axis", "minor_axis", "circularity", "aspect_ratio")
        },
        "created_at": ("datetime", True),
    },
}
SPEC_INDEXES = {
    "images": {"idx_timestamp": ["timestamp"]},
    "classes": {"idx_img_id": ["img_unique_id"], "idx_class_id": ["class_id"]},
    "regions": {
        "idx_class_id": ["class_unique_id"],
        "idx_img_id": ["img_unique_id"],
        "idx_region_id": ["region_id"],
    },
}
SPEC_FOREIGN_KEYS = {
    "classes": {("img_unique_id", "images", "img_unique_id")},
    "regions": {
        ("class_unique_id", "classes", "class_unique_id"),
        ("img_unique_id", "images", "img_unique_id"),
    },
}
SAMPLE_REGION = {
    "centroid_x": 1655.904761904762,
    "centroid_y": 1508.0,
    "perimeter": 15.313708305358887,
    "major_axis": 5.750073432922363,
    "minor_axis": 3.9162988662719727,
    "circularity": 0.750200171090617,
    "aspect_ratio": 1.4682417326326294,
}


def add_image(img_id="20260224_173819_ABC123"):
    image = Image(
        img_unique_id=img_id,
        image_height=1792,
        image_width=1792,
        processing_time_seconds=0.6743,
        timestamp=datetime(2026, 2, 24, 17, 38, 20),
        input_image_path="uploads/x.jpg",
    )
    defect_class = DefectClass(
        class_unique_id=f"{img_id}_1",
        class_id=1,
        class_name="PI_Particle",
        total_regions=1,
        total_area_pixels=14,
    )
    defect_class.regions = [
        Region(
            region_unique_id=f"{img_id}_1_1",
            img_unique_id=img_id,
            region_id=1,
            bbox_x=1653,
            bbox_y=1506,
            bbox_width=7,
            bbox_height=5,
            area_pixels=14,
            **SAMPLE_REGION,
        )
    ]
    image.classes = [defect_class]
    db.session.add(image)
    db.session.commit()
    return img_id


def count(table):
    return db.session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()


@pytest.mark.skipif(not ON_MYSQL, reason="information_schema is MySQL/MariaDB")
def test_information_schema_matches_the_specified_schema(app):
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = DATABASE()"
            )
        ).fetchall()
        actual = {}
        for table, column, data_type, nullable, default in rows:
            actual.setdefault(table, {})[column] = (data_type, nullable == "YES", default)
        for table, columns in SPEC_COLUMNS.items():
            for column, (data_type, nullable) in columns.items():
                assert actual[table][column][:2] == (data_type, nullable), (table, column)
            assert "current_timestamp" in actual[table]["created_at"][2].lower()
        fks = db.session.execute(
            text(
                "SELECT table_name, referenced_table_name, delete_rule "
                "FROM information_schema.referential_constraints "
                "WHERE constraint_schema = DATABASE() AND table_name IN ('classes', 'regions')"
            )
        ).fetchall()
        assert sorted(tuple(row) for row in fks) == [
            ("classes", "images", "CASCADE"),
            ("regions", "classes", "CASCADE"),
            ("regions", "images", "CASCADE"),
        ]


def test_indexes_and_foreign_keys(app):
    with app.app_context():
        inspector = inspect(db.engine)
        for table, expected in SPEC_INDEXES.items():
            actual = {
                index["name"].removeprefix(f"{table}_"): index["column_names"]
                for index in inspector.get_indexes(table)
            }
            # The specified indexes exactly; additive ones (ix_…) may come on top.
            assert {k: v for k, v in actual.items() if k.startswith("idx_")} == expected
            if ON_MYSQL:
                names = {i["name"] for i in inspector.get_indexes(table)}
                assert {n for n in names if n.startswith("idx_")} == set(expected)
        for table, expected in SPEC_FOREIGN_KEYS.items():
            fks = inspector.get_foreign_keys(table)
            assert {
                (fk["constrained_columns"][0], fk["referred_table"], fk["referred_columns"][0])
                for fk in fks
            } == expected
            assert {fk["options"].get("ondelete") for fk in fks} == {"CASCADE"}
        primary = {t: inspector.get_pk_constraint(t)["constrained_columns"] for t in SPEC_COLUMNS}
        assert primary == {
            "images": ["img_unique_id"],
            "classes": ["class_unique_id"],
            "regions": ["region_unique_id"],
        }


def test_floats_round_trip_bit_for_bit(app):
    with app.app_context():
        img_id = add_image()
        db.session.expire_all()
        row = db.session.execute(text("SELECT * FROM regions")).mappings().one()
        for name, value in SAMPLE_REGION.items():
            assert row[name] == value, name
        assert db.session.get(Image, img_id).processing_time_seconds == 0.6743


def test_deleting_an_image_row_cascades_in_the_database(app):
    with app.app_context():
        add_image()
        # Raw SQL: the database itself must cascade, not the ORM.
        db.session.execute(text("DELETE FROM images"))
        db.session.commit()
        assert (count("classes"), count("regions")) == (0, 0)


def test_created_at_defaults_to_now(app):
    with app.app_context():
        img_id = add_image()
        created = db.session.get(Image, img_id).created_at
        assert isinstance(created, datetime)


def test_foreign_keys_are_enforced(app):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(
                text(
                    "INSERT INTO classes (class_unique_id, img_unique_id, class_id, class_name, "
                    "total_regions, total_area_pixels) VALUES ('c', 'missing', 1, 'x', 0, 0)"
                )
            )
            db.session.commit()
        db.session.rollback()
