"""Region search and statistics at millions of rows (issue #12): derived data.

Additive: regions get nullable copies of their class id and their image's timestamp
and batch (class_id, image_timestamp, batch_id), with one covering index per region
sort; stats_days / stats_day_classes hold per-day rollups of images and classes.
The two region indexes of 0003 are replaced by these (nothing reads them any more).

The back-fill (services/derived.rebuild, the same code as `flask aoi reindex`) runs
before the indexes are built, so they are built once, sorted, from filled columns;
it prints its progress.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

SEARCH_INDEXES = {
    'ix_regions_class_time': ['class_id', 'image_timestamp', 'region_unique_id', 'area_pixels', 'circularity', 'aspect_ratio'],
    'ix_regions_class_area': ['class_id', 'area_pixels', 'region_unique_id', 'circularity', 'aspect_ratio', 'image_timestamp'],
    'ix_regions_class_circularity': ['class_id', 'circularity', 'region_unique_id', 'area_pixels', 'aspect_ratio', 'image_timestamp'],
    'ix_regions_class_aspect': ['class_id', 'aspect_ratio', 'region_unique_id', 'area_pixels', 'circularity', 'image_timestamp'],
    'ix_regions_batch': ['batch_id', 'class_id', 'image_timestamp'],
}


def upgrade():
    from aoi_flask.services.derived import rebuild

    op.create_table(
        'stats_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('images', sa.Integer(), nullable=False),
        sa.Column('defects', sa.BigInteger(), nullable=False),
        sa.Column('processing_sum', sa.Float(precision=53), nullable=False),
        sa.Column('processing_min', sa.Float(precision=53), nullable=True),
        sa.Column('processing_max', sa.Float(precision=53), nullable=True),
        sa.Column('stored_bytes', sa.BigInteger(), nullable=False),
        sa.Column('first_at', sa.DateTime(), nullable=True),
        sa.Column('last_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('day'),
    )
    op.create_table(
        'stats_day_classes',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('class_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('class_name', sa.String(length=100), nullable=False),
        sa.Column('images', sa.Integer(), nullable=False),
        sa.Column('regions', sa.BigInteger(), nullable=False),
        sa.Column('area_pixels', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'class_id', 'class_name'),
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('class_id', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('image_timestamp', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('batch_id', sa.String(length=64), nullable=True))
        batch_op.drop_index('ix_regions_class_measures')
        batch_op.drop_index('ix_regions_img_measures')

    result = rebuild(op.get_bind(), progress=lambda line: print(line, flush=True))
    print(f"0005 back-fill: {result}", flush=True)

    with op.batch_alter_table('regions', schema=None) as batch_op:
        for name, columns in SEARCH_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade():
    with op.batch_alter_table('regions', schema=None) as batch_op:
        for name in SEARCH_INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_column('batch_id')
        batch_op.drop_column('image_timestamp')
        batch_op.drop_column('class_id')
        batch_op.create_index('ix_regions_img_measures', ['img_unique_id', 'area_pixels', 'circularity', 'aspect_ratio', 'class_unique_id'], unique=False)
        batch_op.create_index('ix_regions_class_measures', ['class_unique_id', 'area_pixels', 'circularity', 'aspect_ratio'], unique=False)
    op.drop_table('stats_day_classes')
    op.drop_table('stats_days')
