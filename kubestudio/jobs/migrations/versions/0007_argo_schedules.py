"""Schedules Argo Workflows fires (a CronWorkflow per schedule), and the Workflow of each run Argo
runs (a run a CronWorkflow made is named by it).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("workflow", sa.String(253), nullable=False, server_default=""))
    with op.batch_alter_table("pipeline_schedules") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="kubestudio"))


def downgrade():
    with op.batch_alter_table("pipeline_schedules") as batch:
        batch.drop_column("backend")
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_column("workflow")
