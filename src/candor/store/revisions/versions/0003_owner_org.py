"""collections.owner_org (tenancy)

Revision ID: 0003
Revises: 0002

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v3_owner_org``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v3_owner_org

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v3_owner_org(op.get_bind())
