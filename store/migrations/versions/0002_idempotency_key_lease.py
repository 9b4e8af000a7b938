"""idempotency key lease and expiry

A claimed key records when and by which request it was claimed, so that a retry can take over
the key of a request that died; keys expire (and are purged) by `created_at`. Keys left
`in progress` by a dead request before this migration get their creation time as their claim
time, so the first retry after the upgrade takes them over.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", store.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)
    op.execute("UPDATE idempotency_keys SET claimed_at = created_at, claim_token = ''")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("claimed_at", existing_type=store.db.UTCDateTime(timezone=True), nullable=False)
        batch_op.alter_column("claim_token", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
        batch_op.drop_column("claim_token")
        batch_op.drop_column("claimed_at")
