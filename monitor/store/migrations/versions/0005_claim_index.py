"""nodes: the outbox claim reads a partial index in its own order (replaces ix_deliveries_due)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIMABLE = "status IN ('pending', 'failed')"


def upgrade() -> None:
    # Replaced: with it, SQLite's planner sorted the due backlog rather than read the new one.
    op.drop_index('ix_deliveries_due', table_name='deliveries')
    op.create_index(
        'ix_deliveries_claim',
        'deliveries',
        ['next_attempt_at', 'id'],
        unique=False,
        postgresql_where=sa.text(_CLAIMABLE),
        sqlite_where=sa.text(_CLAIMABLE),
    )


def downgrade() -> None:
    op.drop_index('ix_deliveries_claim', table_name='deliveries')
    op.create_index(
        'ix_deliveries_due', 'deliveries', ['status', 'next_attempt_at'], unique=False
    )
