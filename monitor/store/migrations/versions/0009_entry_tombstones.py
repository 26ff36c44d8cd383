"""retention: entry tombstones (feed + GUID hash of pruned articles)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Pruning an article deleted the feed + GUID record that keeps an entry from being stored and
alerted twice; the tombstone keeps that record, in about 45 bytes, for `retention.tombstones`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'entry_tombstones',
        sa.Column('feed_id', sa.Integer(), nullable=False),
        sa.Column('guid_hash', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('pruned_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('feed_id', 'guid_hash'),
        sqlite_with_rowid=False,
    )
    op.create_index(
        'ix_entry_tombstones_pruned', 'entry_tombstones', ['pruned_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_entry_tombstones_pruned', table_name='entry_tombstones')
    op.drop_table('entry_tombstones')
