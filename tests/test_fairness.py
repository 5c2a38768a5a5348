"""Fair Score Normalization: the fitting arithmetic, the shipped parameters and where they apply
(similarity, search ranking, the audit ledger's scoring column). No photos needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from candor.scoring import normalisation as fsn
from candor.scoring import similarity as sim

DATA = Path(fsn.__file__).parents[1] / "data"  # candor/data: the shipped parameter files


def _population(rng, centre, spread, n):
    x = centre + spread * rng.standard_normal((n, centre.size)) / np.sqrt(centre.size)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _unit(rng, d=128):
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def _within_fmr(e, t, norm=None):
    s = e @ e.T if norm is None else norm.scores(e, e)
    return float((s[np.triu_indices(len(e), 1)] >= t).mean())


def _pooled_threshold(groups, fmr, norm=None):
    vals = []
    for e in groups:
        s = e @ e.T if norm is None else norm.scores(e, e)
        vals.append(s[np.triu_indices(len(e), 1)])
    return float(np.quantile(np.concatenate(vals), 1 - fmr))


def test_fit_equalises_false_match_rates_of_a_dense_and_a_sparse_population():
    """A crowded population (different people close together) falsely matches far more often
    at one global threshold; after FSN, fitted without knowing who is in which population and
    tested on fresh people, both populations' FMR are close."""
    rng = np.random.default_rng(1)
    ca, cb = _unit(rng), _unit(rng)
    fit_set = np.vstack([_population(rng, ca, 0.8, 600), _population(rng, cb, 1.1, 600)])
    norm = fsn.fit(fit_set, np.arange(len(fit_set)), k=8, target_fmr=1e-2, seed=0)
    dense, sparse = _population(rng, ca, 0.8, 400), _population(rng, cb, 1.1, 400)

    t = _pooled_threshold([dense, sparse], 1e-2)
    raw = (_within_fmr(dense, t), _within_fmr(sparse, t))
    assert raw[0] > 10 * max(raw[1], 1e-5), raw
    t = _pooled_threshold([dense, sparse], 1e-2, norm)
    after = (_within_fmr(dense, t, norm), _within_fmr(sparse, t, norm))
    assert max(after) / min(after) < 2.0, after
    # the sparse population's clusters were raised, the dense one's not
    assert norm.face_offsets(sparse).mean() > norm.face_offsets(dense).mean() + 0.02


def test_fit_thresholds_are_the_target_quantiles_of_impostor_pairs():
    rng = np.random.default_rng(2)
    e = np.vstack([_population(rng, _unit(rng), 1.0, 150) for _ in range(3)])
    ids = np.repeat(np.arange(225), 2)  # pairs of rows are the same person: never impostors
    s = e @ e.T
    iu = np.triu_indices(len(e), 1)
    impostor = ids[iu[0]] != ids[iu[1]]

    # the paper's rule: pairs involving the cluster; offsets relative to all impostor pairs
    paper = fsn.fit(e, ids, k=6, target_fmr=0.01, neighbours=None)
    assert paper.global_threshold == pytest.approx(np.quantile(s[iu][impostor], 0.99), abs=1e-6)
    cluster = paper.assign(e)
    for c in range(6):
        involved = ((cluster[iu[0]] == c) | (cluster[iu[1]] == c)) & impostor
        assert paper.cluster_thresholds[c] == pytest.approx(np.quantile(s[iu][involved], 0.99),
                                                            abs=1e-5)
        assert paper.offsets[c] == pytest.approx(
            -(paper.cluster_thresholds[c] - paper.global_threshold) / 2, abs=1e-6)
    assert paper.cluster_sizes.sum() == len(e)

    # candor's local rule: pairs between the cluster and its m nearest clusters (and itself)
    local = fsn.fit(e, ids, k=6, target_fmr=0.01, neighbours=1)
    cluster = local.assign(e)
    for c in range(6):
        near = np.argsort(-(local.centroids @ local.centroids[c]))[:2]
        a_in, b_in = cluster[iu[0]] == c, cluster[iu[1]] == c
        a_near, b_near = np.isin(cluster[iu[0]], near), np.isin(cluster[iu[1]], near)
        involved = ((a_in & b_near) | (b_in & a_near)) & impostor
        assert local.cluster_thresholds[c] == pytest.approx(np.quantile(s[iu][involved], 0.99),
                                                            abs=1e-5)
    # offsets are relative to the size-weighted mean threshold: on average they shift nothing
    assert np.average(local.offsets, weights=local.cluster_sizes) == pytest.approx(0, abs=1e-6)


def test_kmeans_is_deterministic_and_finds_separated_clusters():
    rng = np.random.default_rng(3)
    centres = [_unit(rng) for _ in range(4)]
    x = np.vstack([_population(rng, c, 0.3, 50) for c in centres])
    a, b = fsn.kmeans(x, 4, seed=5), fsn.kmeans(x, 4, seed=5)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    labels = np.argmax(x @ a.T, axis=1)
    for i in range(4):  # each true cluster lands in one k-means cluster
        assert len(set(labels[i * 50:(i + 1) * 50])) == 1
    assert len(set(labels)) == 4
    with pytest.raises(ValueError):
        fsn.kmeans(x, 0)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    e = _population(rng, _unit(rng), 1.0, 200)
    norm = fsn.fit(e, np.arange(200), k=5, target_fmr=0.05, name="test-v0")
    norm.save(tmp_path / "n.npz", {"data": "synthetic"})
    back = fsn.Normalisation.load(tmp_path / "n.npz")
    assert back.name == "test-v0" and back.k == 5
    assert np.array_equal(back.offsets, norm.offsets)
    assert np.allclose(back.scores(e[:10], e), norm.scores(e[:10], e))
    assert json.loads((tmp_path / "n.json").read_text()) == {"data": "synthetic"}


# -- the shipped parameters ----------------------------------------------------------------
def test_shipped_parameters_are_small_documented_and_sane():
    path = DATA / f"{fsn.SHIPPED}.npz"
    assert path.stat().st_size < 400_000
    norm = fsn.shipped()
    assert norm is fsn.shipped()  # loaded once
    assert norm.name == fsn.SHIPPED and norm.centroids.shape[1] == 128
    assert np.allclose(np.linalg.norm(norm.centroids, axis=1), 1, atol=1e-4)
    assert np.all(np.abs(norm.offsets) < 0.2)  # shifts, not a different model
    assert norm.offsets.std() > 0.003  # ... and not nothing
    prov = fsn.shipped_provenance()
    for key in ("data", "command", "settings", "date"):
        assert prov.get(key), key
    assert "fit-normalisation" in prov["command"]
    # demographic labels were not read: nothing in the provenance names a group column
    assert "race" not in json.dumps(prov["settings"]) and "gender" not in json.dumps(prov["settings"])


# -- where it applies ----------------------------------------------------------------------
def test_similarity_applies_normalisation_and_can_be_switched_off():
    from candor.config import Settings
    from candor.scoring.similarity import Scoring

    rng = np.random.default_rng(5)
    a = np.vstack([_unit(rng) for _ in range(20)]).astype(np.float32)
    b = np.vstack([_unit(rng) for _ in range(30)]).astype(np.float32)
    norm = fsn.shipped()
    expected = a @ b.T + norm.face_offsets(a)[:, None] + norm.face_offsets(b)[None, :]
    on = Scoring.from_settings(Settings.load(environ={}))
    assert on.normalised and on.name == fsn.SHIPPED and on.description.startswith(fsn.SHIPPED)
    assert np.allclose(sim.scores(a, b), expected)
    assert np.allclose(on.similarity(a, b), sim.similarity_from_cosine(expected))
    assert np.allclose(on.similarity(a, b), on.similarity(b, a).T)  # symmetric

    off = Scoring.from_settings(Settings.load(environ={"CANDOR_NORMALISATION": "off"}))
    assert not off.normalised and off.name == "raw-cosine"
    assert np.allclose(sim.scores(a, b, normalised=False), a @ b.T)
    assert np.allclose(off.similarity(a, b), sim.similarity_from_cosine(a @ b.T, False))
    # a flag wins over the environment
    flagged = Settings.load(environ={"CANDOR_NORMALISATION": "off"}, normalisation=True)
    assert Scoring.from_settings(flagged).normalised


def test_candidate_scores_equal_pairwise_scores():
    rng = np.random.default_rng(6)
    q = _unit(rng).astype(np.float32)
    c = np.vstack([_unit(rng) for _ in range(50)]).astype(np.float32)
    for on in (True, False):
        direct = sim.scores(q, c, normalised=on)[0]
        assert np.allclose(sim.candidate_scores(q, c, c @ q, normalised=on), direct)
        assert np.allclose(sim.candidate_similarities(q, c, c @ q, normalised=on),
                           sim.similarity_from_cosine(direct, normalised=on))


@pytest.mark.parametrize("on", [True, False])
def test_rank_over_a_vector_index_equals_brute_force(on):
    """Normalisation reorders candidates; ranking through the index (which orders by raw
    cosine) must still return exactly the brute-force best k above the threshold."""
    from candor.store.vectors import VectorIndex

    rng = np.random.default_rng(7)
    norm = fsn.shipped()
    # faces near the shipped centroids, so that they fall in clusters with different offsets
    picks = rng.integers(norm.k, size=400)
    x = _population(rng, np.zeros(128), 1.0, 400) * 0.35 + norm.centroids[picks]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    index = VectorIndex()
    keys = np.arange(1000, 1400)
    index.add(keys, x)
    query = x[0] * 0.6 + x[1] * 0.4
    query = (query / np.linalg.norm(query)).astype(np.float32)
    truth = sim.similarity(query, x, normalised=on)[0]
    for k, threshold in ((5, 0.0), (20, 30.0), (400, 50.0), (3, 99.0)):
        got = sim.rank(query, lambda n: index.search(query, n), index.index.reconstruct_batch,
                       k, threshold, normalised=on)
        order = np.argsort(-truth, kind="stable")
        want = [(float(truth[i]), int(keys[i])) for i in order if truth[i] >= threshold][:k]
        assert [key for _, key in got] == [key for _, key in want]
        assert np.allclose([s for s, _ in got], [s for s, _ in want])
