"""feed control: pause from the console; indexes for the console's timeline

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('paused', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('paused_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=100), nullable=True))
    op.create_index('ix_deliveries_alert', 'deliveries', ['alert_id'], unique=False)
    op.create_index('ix_alerts_rule_id', 'alerts', ['rule', 'id'], unique=False)
    op.create_index('ix_matches_rule_created', 'matches', ['rule', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_matches_rule_created', table_name='matches')
    op.drop_index('ix_alerts_rule_id', table_name='alerts')
    op.drop_index('ix_deliveries_alert', table_name='deliveries')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('paused_by')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('paused')
