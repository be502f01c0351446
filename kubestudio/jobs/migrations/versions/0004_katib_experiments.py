"""Experiments that Katib runs: the backend of each, the report token its trials share, and the
Katib Trial behind each trial.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("experiments") as table:
        table.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="kubestudio"))
        table.add_column(sa.Column("report_token_hash", sa.String(64), nullable=False, server_default=""))
    with op.batch_alter_table("experiment_trials") as table:
        table.add_column(sa.Column("katib_trial", sa.String(253), nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("experiment_trials") as table:
        table.drop_column("katib_trial")
    with op.batch_alter_table("experiments") as table:
        table.drop_column("report_token_hash")
        table.drop_column("backend")
