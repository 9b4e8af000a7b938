"""a task's support set in its row

The API stores a new task's support set (the safetensors bytes of `x` and `y`) in the task's row,
in the insert that stores the task, and the adapt worker reads it with the row: one file written,
one read (or two object-store round trips) fewer on every adaptation. Tasks stored before this
migration keep their support set as the artifact `tasks/{id}/support.safetensors`, which the
worker still reads where the column is empty. Roll adapt workers out before API processes: a
worker before this release reads only the file, and fails a task a newer API stored in its row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("support", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Tasks still adapting at a downgrade lose their support set with the column (the older code
    # reads only the file): let adaptations finish first.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("support")
