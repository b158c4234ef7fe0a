"""Alembic environment, run by `tokenward.store.sql.engine.migrate`.

The caller hands over an open connection (inside its transaction and migration lock) through
`config.attributes["connection"]`; there is no alembic.ini and no URL here.
"""

from __future__ import annotations

from alembic import context

from tokenward.store.sql.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with tokenward.store.sql.migrate(engine), or pass a connection in "
        "tokenward.store.sql.alembic_config(connection)"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
