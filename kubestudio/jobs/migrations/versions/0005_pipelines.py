"""Pipelines: runs of DAGs of jobs, their tasks, and the schedules that start runs.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("caller", sa.JSON, nullable=False),
        sa.Column("rerun_of", sa.String(32), nullable=False),
        sa.Column("schedule_id", sa.String(32), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_pipeline_runs_owner", "pipeline_runs", ["owner"])
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline"])
    op.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"])
    op.create_index("ix_pipeline_runs_schedule_id", "pipeline_runs", ["schedule_id"])
    op.create_table(
        "pipeline_tasks",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("reused_from", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("caller", sa.JSON, nullable=False),
        sa.Column("next_fire", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fire", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "pipeline", name="uq_pipeline_schedules_owner_pipeline"),
    )
    op.create_index("ix_pipeline_schedules_owner", "pipeline_schedules", ["owner"])
    op.create_index("ix_pipeline_schedules_next_fire", "pipeline_schedules", ["next_fire"])


def downgrade():
    op.drop_table("pipeline_schedules")
    op.drop_table("pipeline_tasks")
    op.drop_table("pipeline_runs")
