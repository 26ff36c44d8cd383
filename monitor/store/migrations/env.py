"""Alembic environment: runs migrations on the connection the store hands over.

The store calls `alembic.command.upgrade` with `config.attributes["connection"]` set, so
migrations run inside the store's own engine (SQLite pragmas, PostgreSQL URL) and never read a
URL from an ini file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from monitor.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` run by hand (e.g. to autogenerate): needs -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///alembic-dev.db")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
