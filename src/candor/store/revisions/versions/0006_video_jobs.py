"""video_jobs

Revision ID: 0006
Revises: 0005

From candor's pre-Alembic scheme: the body is ``candor.store.migrations._v6_video_jobs``.
"""

from __future__ import annotations

from alembic import op

from candor.store.migrations import _v6_video_jobs

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _v6_video_jobs(op.get_bind())
