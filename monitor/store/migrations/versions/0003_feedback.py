"""feedback: an analyst's verdict on an alert

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'feedback',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.Text(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('author', sa.Text(), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('relevant', 'irrelevant')", name='ck_feedback_verdict'
        ),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_feedback_alert', 'feedback', ['alert_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_feedback_alert', table_name='feedback')
    op.drop_table('feedback')
