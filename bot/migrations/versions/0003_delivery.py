"""Delivery: inbound queue, outbox, leases and channel addresses.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("address", sa.String(128), nullable=True))
        batch.add_column(sa.Column("last_inbound_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("template_sent_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("delay_notified", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("send_lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("send_lease_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="done"))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="text"))
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("buttons", sa.Text(), nullable=True))
        batch.add_column(sa.Column("language", sa.String(16), nullable=True))
        batch.add_column(sa.Column("error", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime(), nullable=True))
    op.create_index("ix_messages_state", "messages", ["state"])
    op.create_index("ix_messages_conversation_state", "messages", ["conversation_id", "direction", "state"])


def downgrade() -> None:
    op.drop_index("ix_messages_conversation_state", "messages")
    op.drop_index("ix_messages_state", "messages")
    with op.batch_alter_table("messages") as batch:
        for name in ("sent_at", "error", "language", "buttons", "reply_to", "next_attempt_at", "attempts",
                     "sequence", "kind", "state"):
            batch.drop_column(name)
    with op.batch_alter_table("conversations") as batch:
        for name in ("send_lease_until", "send_lease_owner", "lease_until", "lease_owner", "delay_notified",
                     "template_sent_at", "last_inbound_at", "address"):
            batch.drop_column(name)
