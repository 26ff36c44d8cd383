"""console: 304 counts per feed in the store; indexes for the timeline's filters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('not_modified', sa.Integer(), nullable=False, server_default='0')
        )
    op.create_index('ix_alerts_severity_id', 'alerts', ['severity', 'id'], unique=False)
    op.create_index(
        'ix_deliveries_status_alert', 'deliveries', ['status', 'alert_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_deliveries_status_alert', table_name='deliveries')
    op.drop_index('ix_alerts_severity_id', table_name='alerts')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('not_modified')
