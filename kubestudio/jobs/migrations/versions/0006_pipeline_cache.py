"""Pipelines' cache (each task's cache key, and whether its result was taken from an earlier run's),
and who runs a pipeline run's DAG (Argo Workflows, or the service).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("pipeline_tasks") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_pipeline_tasks_cache_key", "pipeline_tasks", ["cache_key"])
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="kubestudio"))


def downgrade():
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_column("backend")
    op.drop_index("ix_pipeline_tasks_cache_key", "pipeline_tasks")
    with op.batch_alter_table("pipeline_tasks") as batch:
        batch.drop_column("cached")
        batch.drop_column("cache_key")
