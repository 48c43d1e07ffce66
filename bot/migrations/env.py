"""Alembic environment: uses the engine handed over by bot.migrations.upgrade."""

from alembic import context

from bot.db import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
