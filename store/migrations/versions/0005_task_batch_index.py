"""index for the adapt worker's batches

The adapt worker that takes a task asks for its model's other tasks still adapting, oldest first
(workers/pipelines.adapt_tasks), once per message; the reconciler asks for tasks adapting. One
index on (model_id, status, created_at) answers both without reading the model's other tasks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_model_status_created", ["model_id", "status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_model_status_created")
