"""Drop ``jobs.run_dir``: a job's folders follow from the data directory, owner and id.

Every reader computed the path (``JobFiles``); the column was written at creation (after a
flush, to know the id) and never read, and would have gone stale if the data directory moved.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop the column (SQLite copies the table: batch mode)."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_dir")


def downgrade() -> None:
    """Add the column again, empty for every job (nothing read it)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("run_dir", sa.String(length=1024), nullable=False, server_default="")
        )
