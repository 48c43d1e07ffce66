"""Privacy: the person's storage choice, the first-contact notice, pending erasures; wider columns for
encrypted values (Fernet tokens are longer than the text they hold).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("storage", sa.String(16), nullable=True))
        batch.add_column(sa.Column("notice_sent_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("erase_requested_at", sa.DateTime(), nullable=True))
        batch.alter_column("address", type_=sa.Text(), existing_type=sa.String(128), existing_nullable=True)
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("payload", type_=sa.Text(), existing_type=sa.String(256), existing_nullable=True)
    op.create_index("ix_conversations_last_activity_at", "conversations", ["last_activity_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_last_activity_at", "conversations")
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("payload", type_=sa.String(256), existing_type=sa.Text(), existing_nullable=True)
    with op.batch_alter_table("conversations") as batch:
        batch.alter_column("address", type_=sa.String(128), existing_type=sa.Text(), existing_nullable=True)
        batch.drop_column("erase_requested_at")
        batch.drop_column("notice_sent_at")
        batch.drop_column("storage")
