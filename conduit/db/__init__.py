"""Persistence: ORM tables (`db.models`) and the one Alembic tree (`db.migrations`)."""
