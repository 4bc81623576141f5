"""Durable state: SQLAlchemy 2 models, the database handle, repositories and Alembic migrations."""
