"""services.phone: 64 characters were too few for a line with its hours ("+32 2 … (Mon–Fri 9–17), …").

SQLite never enforced the length; PostgreSQL (the production profile) refused the service directory.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.alter_column("phone", type_=sa.String(256), existing_type=sa.String(64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.alter_column("phone", type_=sa.String(64), existing_type=sa.String(256), existing_nullable=True)
