"""Video job ownership in the store, on SQLite and PostgreSQL: a job in progress belongs to one
node until its lease expires; a claim is one conditional UPDATE, so of several nodes racing
for an orphan exactly one wins; a node that lost its job can no longer write to it; a node's
data dir lock tells a restarted node that its previous process is dead.

(The same rules with real ``candor serve`` nodes: tests/test_video_nodes.py.)"""

from __future__ import annotations

import threading

import pytest

from candor.service.node import claim_node, persistent_id
from candor.store import Store

pytestmark = pytest.mark.usefixtures("database_url")

EXPIRED = -1.0  # a lease that ended a second before it was written: no waiting in the test


def new_job(store: Store, job_id: str, owner: str | None, lease: float | None):
    return store.create_job(job_id=job_id, operation="StartFaceDetection", params={},
                            video_path="/nonexistent.mp4", owner=owner, lease=lease)


@pytest.fixture()
def store(tmp_path, database_url):
    s = Store(tmp_path / "data", url=database_url)
    yield s
    s.db.engine.dispose()


def test_a_live_lease_keeps_the_job_with_its_owner(store):
    job = new_job(store, "live", "node-a", 60)
    assert job.owner == "node-a" and job.lease_expires > job.created_at
    assert store.claimable_jobs() == []
    assert not store.claim_job("live", "node-b", 60)
    assert not store.claim_job("live", "node-b", 60, own=True)  # "own" is only for the owner
    assert store.renew_leases({"live"}, "node-a", 60) == set()
    assert store.update_job("live", owner="node-a", progress=50.0)
    assert not store.update_job("live", owner="node-b", progress=1.0)
    assert store.job("live").owner == "node-a" and store.job("live").progress == 50.0
    # the owner restarted under the same id takes it back at once
    assert [j.job_id for j in store.claimable_jobs(owner="node-a")] == ["live"]
    assert store.claim_job("live", "node-a", 60, own=True)


def test_an_expired_lease_is_taken_over_once_and_the_old_owner_is_locked_out(store):
    new_job(store, "orphan", "node-a", EXPIRED)
    assert [j.job_id for j in store.claimable_jobs()] == ["orphan"]
    results: list[bool] = []
    nodes = [f"node-{n}" for n in "bcdef"]
    threads = [threading.Thread(target=lambda n=n: results.append(store.claim_job("orphan", n, 60)))
               for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 4 + [True]
    winner = store.job("orphan").owner
    assert winner in nodes
    # node A comes back (it was stalled, not dead): its heartbeat learns it lost the job, and
    # none of its writes land
    assert store.renew_leases({"orphan"}, "node-a", 60) == {"orphan"}
    assert not store.update_job("orphan", owner="node-a", status="SUCCEEDED")
    assert store.job("orphan").status == "IN_PROGRESS" and store.job("orphan").owner == winner
    # the winner finishes it; a finished job is no one's to claim
    assert store.update_job("orphan", owner=winner, status="SUCCEEDED", lease_expires=None)
    assert store.claimable_jobs() == [] and not store.claim_job("orphan", "node-a", 60)


def test_jobs_from_before_leases_and_released_jobs_are_claimable(store):
    new_job(store, "old", None, None)  # a job written before revision 0008: no owner, no lease
    new_job(store, "held", "node-a", 60)
    assert [j.job_id for j in store.claimable_jobs()] == ["old"]
    store.release_jobs({"held"}, "node-b")  # not B's to release
    assert [j.job_id for j in store.claimable_jobs()] == ["old"]
    store.release_jobs({"held"}, "node-a")  # A stops cleanly
    assert {j.job_id for j in store.claimable_jobs()} == {"old", "held"}
    assert store.claim_job("held", "node-b", 60) and store.claim_job("old", "node-b", 60)


def test_the_node_lock_tells_a_restarted_node_it_is_alone(tmp_path):
    data = tmp_path / "node"
    first = claim_node(data)
    assert first is not None
    node = persistent_id(data)
    assert persistent_id(data) == node  # the same data dir is the same node
    assert claim_node(data) is None  # a second process on the data dir is not this node
    first.close()  # the process ends (kill -9 included: the kernel drops the lock)
    again = claim_node(data)
    assert again is not None and persistent_id(data) == node
    again.close()
