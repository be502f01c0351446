"""Build logs in chunks of ~64 KiB (capped logs, followers read a chunk at a time).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # a store from between the two releases may have the table already (it was created on use)
    if "build_log_chunks" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "build_log_chunks",
        sa.Column("build_id", sa.String(32), sa.ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade():
    op.drop_table("build_log_chunks")
