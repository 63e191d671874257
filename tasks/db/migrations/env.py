"""Alembic environment: migrations run on a connection that healthflow hands over."""

from alembic import context

from tasks.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
