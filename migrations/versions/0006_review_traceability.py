"""Defect review and traceability (issue #16): additive only.

- images and batches: lot_id, wafer_id, tool_id, recipe, layer, operator (nullable);
  images also reviewed_at / reviewed_by; one (field, timestamp) index per field.
- region_reviews: a reviewer's disposition per region, beside the model's values.
- review_log: append-only history of every review change.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-04 20:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None

TRACE_FIELDS = ('lot_id', 'wafer_id', 'tool_id', 'recipe', 'layer', 'operator')


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        for name in TRACE_FIELDS:
            batch_op.add_column(sa.Column(name, sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.String(length=64), nullable=True))
        for name in TRACE_FIELDS:
            batch_op.create_index(f'ix_images_{name}_time', [name, 'timestamp'], unique=False)

    with op.batch_alter_table('batches', schema=None) as batch_op:
        for name in TRACE_FIELDS:
            batch_op.add_column(sa.Column(name, sa.String(length=64), nullable=True))

    op.create_table(
        'region_reviews',
        sa.Column('region_unique_id', sa.String(length=255), nullable=False),
        sa.Column('img_unique_id', sa.String(length=255), nullable=False),
        sa.Column('disposition', sa.String(length=16), nullable=False),
        sa.Column('reviewer_class_name', sa.String(length=100), nullable=True),
        sa.Column('comment', sa.String(length=1000), nullable=True),
        sa.Column('reviewed_by', sa.String(length=64), nullable=False),
        sa.Column('reviewed_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['img_unique_id'], ['images.img_unique_id'], name=op.f('fk_region_reviews_img_unique_id_images'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['region_unique_id'], ['regions.region_unique_id'], name=op.f('fk_region_reviews_region_unique_id_regions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('region_unique_id', name=op.f('pk_region_reviews')),
    )
    with op.batch_alter_table('region_reviews', schema=None) as batch_op:
        batch_op.create_index('ix_region_reviews_img', ['img_unique_id', 'disposition'], unique=False)
        batch_op.create_index('ix_region_reviews_disposition', ['disposition', 'region_unique_id'], unique=False)

    op.create_table(
        'review_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('img_unique_id', sa.String(length=255), nullable=False),
        sa.Column('region_unique_id', sa.String(length=255), nullable=True),
        sa.Column('changed_by', sa.String(length=64), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=False),
        sa.Column('old_value', sa.Text(), nullable=False),
        sa.Column('new_value', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['img_unique_id'], ['images.img_unique_id'], name=op.f('fk_review_log_img_unique_id_images'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_review_log')),
    )
    with op.batch_alter_table('review_log', schema=None) as batch_op:
        batch_op.create_index('ix_review_log_img', ['img_unique_id', 'id'], unique=False)


def downgrade():
    # Their indexes go with the tables (MariaDB refuses to drop an index a foreign key uses).
    op.drop_table('review_log')
    op.drop_table('region_reviews')

    with op.batch_alter_table('batches', schema=None) as batch_op:
        for name in reversed(TRACE_FIELDS):
            batch_op.drop_column(name)

    with op.batch_alter_table('images', schema=None) as batch_op:
        for name in reversed(TRACE_FIELDS):
            batch_op.drop_index(f'ix_images_{name}_time')
        batch_op.drop_column('reviewed_by')
        batch_op.drop_column('reviewed_at')
        for name in reversed(TRACE_FIELDS):
            batch_op.drop_column(name)
