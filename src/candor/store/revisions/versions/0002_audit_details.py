"""audit_records.details

Revision ID: 0002
Revises: 0001

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v2_audit_details``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v2_audit_details

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v2_audit_details(op.get_bind())
