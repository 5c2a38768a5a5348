"""seen_signatures (replay protection)

Revision ID: 0004
Revises: 0003

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v4_seen_signatures``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v4_seen_signatures

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v4_seen_signatures(op.get_bind())
