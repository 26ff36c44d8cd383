"""retention: indexes for deleting articles and stories (their children are found by index)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Without them, every deleted article made SQLite scan `story_bands` (its ON DELETE CASCADE) and
`alerts` (the foreign key check), and every deleted story `story_keys` and `alerts`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_story_bands_article', 'story_bands', ['article_id'], unique=False)
    op.create_index('ix_story_keys_story', 'story_keys', ['story_id'], unique=False)
    op.create_index('ix_alerts_article', 'alerts', ['article_id'], unique=False)
    op.create_index('ix_alerts_story', 'alerts', ['story_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alerts_story', table_name='alerts')
    op.drop_index('ix_alerts_article', table_name='alerts')
    op.drop_index('ix_story_keys_story', table_name='story_keys')
    op.drop_index('ix_story_bands_article', table_name='story_bands')
