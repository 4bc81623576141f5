"""Domain functions: the business rules between the routes and the repositories.

They take a SQLAlchemy `session=` (the route owns the transaction), raise `core.errors` exceptions and
never import FastAPI or Ray.
"""
