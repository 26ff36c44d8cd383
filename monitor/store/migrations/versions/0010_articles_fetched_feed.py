"""console: articles by fetch time with their feed, so entries per feed per day read no rows

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

The sources page and /api/v1/feeds count each feed's articles of the last 7 days. With an
index on `fetched_at` alone, every article of the window was read from the table for its
`feed_id` (articles hold their bodies; at 100,000 stored, 10,000 in the window: 63 ms
in-process). An index on `(fetched_at, feed_id)` answers the count by itself (14 ms), and
serves every query the one on `fetched_at` served (retention, recent entries), so it
replaces it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_articles_fetched_feed', 'articles', ['fetched_at', 'feed_id'], unique=False)
    op.drop_index('ix_articles_fetched', table_name='articles')


def downgrade() -> None:
    op.create_index('ix_articles_fetched', 'articles', ['fetched_at'], unique=False)
    op.drop_index('ix_articles_fetched_feed', table_name='articles')
