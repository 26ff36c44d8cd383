"""health: an index for the feeds-by-health counts of /healthz and /metrics

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

The health snapshot read every feed's row (150 ms at 100,000 feeds); with this index it counts
the active feeds on a narrow index and reads the failing ones as a range of it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_feeds_health',
        'feeds',
        ['active', 'consecutive_failures', 'broken_reported'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_feeds_health', table_name='feeds')
