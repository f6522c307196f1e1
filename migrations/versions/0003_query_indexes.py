"""Query indexes for history, region search and statistics (checked with EXPLAIN).

Additive only: the specified idx_* indexes stay. Each new index lets a query of
services/queries.py read an index alone, or in the order it needs, on MariaDB:

- images (timestamp, total_defects, processing_time_seconds, stored_bytes):
  /stats totals and per-day counts, with or without a date window.
- classes (img_unique_id, class_name, total_regions, class_id, total_area_pixels):
  the history class filter ("has regions of class X") and windowed per-class stats.
- classes (class_id, class_name, total_regions, total_area_pixels): unwindowed
  per-class stats in GROUP BY order (no temporary table).
- regions (img_unique_id, area/circularity/aspect ranges, class_unique_id) and
  regions (class_unique_id, area/circularity/aspect ranges): region search reached
  from images (window, batch, newest first) or from classes (class filter).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:45:43.409664

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index('ix_images_time_totals', ['timestamp', 'total_defects', 'processing_time_seconds', 'stored_bytes'], unique=False)

    with op.batch_alter_table('classes', schema=None) as batch_op:
        batch_op.create_index('ix_classes_img_totals', ['img_unique_id', 'class_name', 'total_regions', 'class_id', 'total_area_pixels'], unique=False)
        batch_op.create_index('ix_classes_stats', ['class_id', 'class_name', 'total_regions', 'total_area_pixels'], unique=False)

    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index('ix_regions_img_measures', ['img_unique_id', 'area_pixels', 'circularity', 'aspect_ratio', 'class_unique_id'], unique=False)
        batch_op.create_index('ix_regions_class_measures', ['class_unique_id', 'area_pixels', 'circularity', 'aspect_ratio'], unique=False)


def downgrade():
    # All five can go on MySQL/MariaDB too: the foreign keys on img_unique_id and
    # class_unique_id keep their own single-column indexes (idx_img_id, idx_class_id).
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index('ix_regions_class_measures')
        batch_op.drop_index('ix_regions_img_measures')

    with op.batch_alter_table('classes', schema=None) as batch_op:
        batch_op.drop_index('ix_classes_stats')
        batch_op.drop_index('ix_classes_img_totals')

    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_time_totals')
