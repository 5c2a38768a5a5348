"""reviews, operators, console sessions, face thumbnails

Revision ID: 0007
Revises: 0006

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v7_review_console``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v7_review_console

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v7_review_console(op.get_bind())
