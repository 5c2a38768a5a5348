"""celebrity gallery

Revision ID: 0005
Revises: 0004

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v5_celebrities``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v5_celebrities

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v5_celebrities(op.get_bind())
