"""video_jobs.owner, video_jobs.lease_expires (job leases across nodes)

Revision ID: 0008
Revises: 0007

A video job in progress belongs to one node (``owner``) until ``lease_expires``; the node's
heartbeat renews the lease, and another node may take the job over only once it has expired
(candor.service.jobs). Jobs already in progress get no owner and no lease: the next node to
start takes them up, as before. Revision 0006 creates ``video_jobs`` from the current schema,
so on a fresh database the columns may already be there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("video_jobs")}
    if "owner" not in have:
        op.add_column("video_jobs", sa.Column("owner", sa.String(128), nullable=True))
    if "lease_expires" not in have:
        op.add_column("video_jobs", sa.Column("lease_expires", sa.DateTime(timezone=True),
                                              nullable=True))
