"""initial schema

Revision ID: 0001
Revises: (none)

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v1_initial``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v1_initial

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v1_initial(op.get_bind())
