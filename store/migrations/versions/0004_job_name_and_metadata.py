"""job name and metadata

A job takes an optional name and up to 16 metadata string pairs from its client, and lists filter
on both. Jobs made before this migration have neither.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_metadata",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id", "key"),
    )
    with op.batch_alter_table("job_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_metadata_value"), ["value"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_name"))
        batch_op.drop_column("name")
    with op.batch_alter_table("job_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_metadata_value"))
    op.drop_table("job_metadata")
