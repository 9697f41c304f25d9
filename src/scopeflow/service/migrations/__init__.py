"""Alembic migrations of the service's database (applied by ``scopeflow.service.migrate``)."""
