"""The results database: `images` 1──< `classes` 1──< `regions` (DATABASE_SCHEMA.md).

Column names, types, nullability and index names follow the specified schema
exactly; extension columns are additive and nullable.
"""

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, DropIndex

from .extensions import db

# MySQL's plain FLOAT is single precision; FLOAT(53) stores doubles exactly.
Double = db.Float(precision=53)

CLASS_NAMES = {1: "PI_Particle", 2: "PR_Peeling", 3: "Copper_Nodule", 4: "Env_Particle"}
CLASS_IDS = {name: class_id for class_id, name in CLASS_NAMES.items()}


class Image(db.Model):
    __tablename__ = "images"

    img_unique_id = db.Column(db.String(255), primary_key=True)
    image_height = db.Column(db.Integer, nullable=False)
    image_width = db.Column(db.Integer, nullable=False)
    processing_time_seconds = db.Column(Double, nullable=False)
    timestamp = db.Column(db.DateTime, nullable=False)
    input_image_path = db.Column(db.String(500), nullable=False)
    result_image_1_path = db.Column(db.String(500))  # combined
    result_image_2_path = db.Column(db.String(500))  # mask
    result_image_3_path = db.Column(db.String(500))  # overlay
    created_at = db.Column(db.DateTime, server_default=db.func.current_timestamp())

    # Extensions (additive, nullable).
    original_filename = db.Column(db.String(500))
    model_name = db.Column(db.String(255))
    batch_id = db.Column(db.String(64))
    analysis_json_path = db.Column(db.String(500))
    thumbnail_path = db.Column(db.String(500))
    total_defects = db.Column(db.Integer)
    stored_bytes = db.Column(db.BigInteger)
    # Retention (`flask aoi cleanup`): the files were deleted, the rows stay (downloads: 410).
    purged_at = db.Column(db.DateTime)
    # `flask aoi fsck --repair` found stored files missing (downloads: 404 FILE_MISSING).
    files_missing_at = db.Column(db.DateTime)

    classes = db.relationship(
        "DefectClass",
        back_populates="image",
        order_by="DefectClass.class_id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        db.Index("idx_timestamp", "timestamp"),
        db.Index("ix_images_batch_time", "batch_id", "timestamp"),
        # Statistics totals and per-day counts (with or without a window) read only this.
        db.Index(
            "ix_images_time_totals",
            "timestamp",
            "total_defects",
            "processing_time_seconds",
            "stored_bytes",
        ),
    )


class DefectClass(db.Model):
    __tablename__ = "classes"

    class_unique_id = db.Column(db.String(255), primary_key=True)
    img_unique_id = db.Column(
        db.String(255),
        db.ForeignKey("images.img_unique_id", ondelete="CASCADE"),
        nullable=False,
    )
    class_id = db.Column(db.Integer, nullable=False)
    class_name = db.Column(db.String(100), nullable=False)
    total_regions = db.Column(db.Integer, nullable=False)
    total_area_pixels = db.Column(db.Integer, nullable=False)
    created_at = db.Column(db.DateTime, server_default=db.func.current_timestamp())

    image = db.relationship("Image", back_populates="classes")
    regions = db.relationship(
        "Region",
        back_populates="defect_class",
        order_by="Region.region_id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        db.Index("idx_img_id", "img_unique_id"),
        db.Index("idx_class_id", "class_id"),
        # History "images with class X" and per-class statistics read only this index.
        db.Index(
            "ix_classes_name_regions",
            "class_name",
            "total_regions",
            "img_unique_id",
            "total_area_pixels",
        ),
        # "Has this image regions of class X" (history class filter) and windowed
        # per-class statistics, reached from images: index-only.
        db.Index(
            "ix_classes_img_totals",
            "img_unique_id",
            "class_name",
            "total_regions",
            "class_id",
            "total_area_pixels",
        ),
        # Unwindowed per-class statistics: one index scan in GROUP BY order.
        db.Index(
            "ix_classes_stats", "class_id", "class_name", "total_regions", "total_area_pixels"
        ),
    )


_MEASURES = ("area_pixels", "circularity", "aspect_ratio")
REGION_SEARCH_INDEXES = {
    "ix_regions_class_time": ("image_timestamp", "region_unique_id", *_MEASURES),
    "ix_regions_class_area": ("area_pixels", "region_unique_id", *_MEASURES[1:], "image_timestamp"),
    "ix_regions_class_circularity": (
        "circularity",
        "region_unique_id",
        "area_pixels",
        "aspect_ratio",
        "image_timestamp",
    ),
    "ix_regions_class_aspect": (
        "aspect_ratio",
        "region_unique_id",
        "area_pixels",
        "circularity",
        "image_timestamp",
    ),
}


class Region(db.Model):
    __tablename__ = "regions"

    region_unique_id = db.Column(db.String(255), primary_key=True)
    class_unique_id = db.Column(
        db.String(255),
        db.ForeignKey("classes.class_unique_id", ondelete="CASCADE"),
        nullable=False,
    )
    img_unique_id = db.Column(
        db.String(255),
        db.ForeignKey("images.img_unique_id", ondelete="CASCADE"),
        nullable=False,
    )
    region_id = db.Column(db.Integer, nullable=False)
    centroid_x = db.Column(Double, nullable=False)
    centroid_y = db.Column(Double, nullable=False)
    bbox_x = db.Column(db.Integer, nullable=False)
    bbox_y = db.Column(db.Integer, nullable=False)
    bbox_width = db.Column(db.Integer, nullable=False)
    bbox_height = db.Column(db.Integer, nullable=False)
    area_pixels = db.Column(db.Integer, nullable=False)
    perimeter = db.Column(Double, nullable=False)
    major_axis = db.Column(Double, nullable=False)
    minor_axis = db.Column(Double, nullable=False)
    circularity = db.Column(Double, nullable=False)
    aspect_ratio = db.Column(Double, nullable=False)
    created_at = db.Column(db.DateTime, server_default=db.func.current_timestamp())

    # Derived (issue #12): copies of the class id and the image's timestamp and batch, so
    # region search filters and sorts inside one index instead of joining three tables.
    # Kept by services/derived.py on every ORM write; `flask aoi reindex` rebuilds them
    # for rows written by other tools. NULL until then.
    class_id = db.Column(db.SmallInteger)
    image_timestamp = db.Column(db.DateTime)
    batch_id = db.Column(db.String(64))

    defect_class = db.relationship("DefectClass", back_populates="regions")

    __table_args__ = (
        db.Index("idx_class_id", "class_unique_id"),
        db.Index("idx_img_id", "img_unique_id"),
        db.Index("idx_region_id", "region_id"),
        # Region search: the measurement ranges checked inside the index, reached from
        # images (date window, batch, newest first) or from classes (class filter).
        # Region search, one index per sort key: class, sort key and id give the page
        # order; the other filter columns follow, so every filter is checked inside the
        # index and a page or a bounded count reads no table rows (services/queries.py).
        *(db.Index(name, "class_id", *columns) for name, columns in REGION_SEARCH_INDEXES.items()),
        db.Index("ix_regions_batch", "batch_id", "class_id", "image_timestamp"),
    )


class StatsDay(db.Model):
    """Rollup of `images` per UTC day, kept in the same transaction as the image rows
    (services/derived.py); /stats and history totals read it for whole days."""

    __tablename__ = "stats_days"

    day = db.Column(db.Date, primary_key=True)
    images = db.Column(db.Integer, nullable=False)
    defects = db.Column(db.BigInteger, nullable=False)  # sum of images.total_defects
    processing_sum = db.Column(Double, nullable=False)
    processing_min = db.Column(Double)
    processing_max = db.Column(Double)
    stored_bytes = db.Column(db.BigInteger, nullable=False)
    first_at = db.Column(db.DateTime)
    last_at = db.Column(db.DateTime)


class StatsDayClass(db.Model):
    """Rollup of `classes` per UTC day (of the image) and class."""

    __tablename__ = "stats_day_classes"

    day = db.Column(db.Date, primary_key=True)
    class_id = db.Column(db.Integer, primary_key=True, autoincrement=False)
    class_name = db.Column(db.String(100), primary_key=True)
    images = db.Column(db.Integer, nullable=False)  # class rows with total_regions > 0
    regions = db.Column(db.BigInteger, nullable=False)
    area_pixels = db.Column(db.BigInteger, nullable=False)


class Batch(db.Model):
    """One POST /upload/batch request; its files are BatchItems."""

    __tablename__ = "batches"

    batch_id = db.Column(db.String(64), primary_key=True)
    total_files = db.Column(db.Integer, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False)
    # Status, start and finish are derived from the items (services.batches.progress_of),
    # so workers never contend for the batch row.

    items = db.relationship(
        "BatchItem",
        back_populates="batch",
        order_by="BatchItem.file_index",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (db.Index("ix_batches_created", "created_at"),)


class BatchItem(db.Model):
    """One file of a batch: its stored input, state and outcome."""

    __tablename__ = "batch_items"

    id = db.Column(db.Integer, primary_key=True, autoincrement=True)
    batch_id = db.Column(
        db.String(64), db.ForeignKey("batches.batch_id", ondelete="CASCADE"), nullable=False
    )
    file_index = db.Column(db.Integer, nullable=False)
    filename = db.Column(db.String(500), nullable=False)
    state = db.Column(db.String(16), nullable=False, default="queued")
    # Reserved when the input is saved; an `images` row exists only once state is done.
    img_unique_id = db.Column(db.String(255))
    input_path = db.Column(db.String(500))
    result_dir = db.Column(db.String(500))
    error_code = db.Column(db.String(64))
    error_message = db.Column(db.Text)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    queued_at = db.Column(db.DateTime, nullable=False)
    started_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)

    batch = db.relationship("Batch", back_populates="items")

    __table_args__ = (
        db.Index("ix_batch_items_batch_state", "batch_id", "state"),
        db.Index("ix_batch_items_img", "img_unique_id"),
    )


def sqlite_index_name(index):
    """SQLite index names are global; the spec's names repeat across tables."""
    name = index.name
    if name.startswith("idx_"):
        return f"{index.table.name}_{name}"
    return name


def _with_sqlite_name(element, compiler, visit, **kw):
    index = element.element
    original = index.name
    index.name = sqlite_index_name(index)
    try:
        return visit(element, **kw)
    finally:
        index.name = original


@compiles(CreateIndex, "sqlite")
def _create_index_sqlite(element, compiler, **kw):
    return _with_sqlite_name(element, compiler, compiler.visit_create_index, **kw)


@compiles(DropIndex, "sqlite")
def _drop_index_sqlite(element, compiler, **kw):
    return _with_sqlite_name(element, compiler, compiler.visit_drop_index, **kw)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Without PRAGMA foreign_keys SQLite silently ignores ON DELETE CASCADE."""
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
