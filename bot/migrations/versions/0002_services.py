"""Service directory.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("country", sa.String(16), nullable=False),
        sa.Column("organisation", sa.String(256), nullable=False),
        sa.Column("types", sa.String(256), nullable=False),
        sa.Column("city", sa.String(128), nullable=True),
        sa.Column("address", sa.String(512), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("website", sa.String(512), nullable=True),
        sa.Column("languages", sa.String(128), nullable=False),
        sa.Column("opening_hours", sa.String(256), nullable=True),
        sa.Column("cost", sa.String(128), nullable=True),
        sa.Column("confidentiality", sa.String(512), nullable=True),
        sa.Column("source_name", sa.String(256), nullable=False),
        sa.Column("source_url", sa.String(512), nullable=True),
        sa.Column("source_year", sa.Integer, nullable=True),
        sa.Column("source_accessed", sa.Integer, nullable=True),
        sa.Column("verified", sa.Date, nullable=True),
    )
    op.create_index("ix_services_country", "services", ["country"])


def downgrade() -> None:
    op.drop_table("services")
