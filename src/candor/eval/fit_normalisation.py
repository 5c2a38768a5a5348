"""Fit Fair Score Normalization on reference photo sets (``candor eval fit-normalisation``).

    candor eval fit-normalisation \\
        -r ../shared/data/faces/lfw/pairsDevTrain.txt \\
        -r ../shared/data/faces/fairface-val/labels.csv@1/2 \\
        --output src/candor/data/normalisation-v1.npz

Reference sets are :func:`candor.eval.datasets.load` specs: a ``<person>/<photo>`` folder, a
labels CSV (every photo a different person unless it has an identity column) or an LFW pairs
file (its photos, people from the names), each optionally ``@K/N`` for the K-th of N disjoint
parts split by person. Only identities are read from them - to know which pairs are impostors;
a labels CSV's other columns (such as race or gender) are dropped before fitting, so
demographic labels can never reach the parameters (docs/fairness.md).

Photos are embedded through :mod:`candor.eval.embeddings` (cached), exactly as the engine
embeds them; photos without a detected face take no part. The parameters and a provenance file
(what data, which command, which settings, when) are written side by side.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from pathlib import Path

import numpy as np

from candor import __version__, clock
from candor.scoring import normalisation as fsn


def reference_embeddings(specs: list[str], *, images: Path | None = None,
                         backend: str | None = None, detector: str | None = None,
                         face: str = "centre", data_dir=None, workers: int | None = None,
                         use_cache: bool = True,
                         progress=None) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
    """(embeddings, identities, per-set facts, embedding settings) of the photos with a face in
    the reference sets. Identities are prefixed by the set, so people of different sets never
    count as the same person."""
    from candor.eval import datasets
    from candor.eval import embeddings as emb_mod

    vectors, identities, sets = [], [], []
    settings: dict = {}
    for number, spec in enumerate(specs):
        s = datasets.load(spec, images)
        s.groups = {}  # never read demographic (or any other) labels: identities only
        e = emb_mod.embed_images(s.paths, backend=backend, detector=detector, face=face,
                                 data_dir=data_dir, workers=workers, use_cache=use_cache,
                                 progress=progress(spec) if progress else None)
        settings = e.settings
        keep = np.flatnonzero(e.found)
        vectors.append(e.embeddings[keep])
        identities.extend(f"{number}:{s.identities[i]}" for i in keep)
        listing = hashlib.sha256("\n".join(sorted(e.sha256)).encode()).hexdigest()
        sets.append({"set": spec, "photos": len(s), "photos_with_face": int(len(keep)),
                     "people": len(set(s.identities)), "photos_sha256": listing})
    if not vectors or not sum(len(v) for v in vectors):
        raise ValueError("no face was found in the reference sets")
    return np.concatenate(vectors), np.asarray(identities), sets, settings


def run(specs: list[str], output: Path, *, clusters: int = 100, target_fmr: float = 1e-2,
        neighbours: int | None = 5, seed: int = 0, name: str | None = None,
        command: str | None = None, **embed_args) -> dict:
    """Fit, write ``output`` (.npz) and its provenance (.json); return the provenance."""
    started = time.perf_counter()
    e, ids, sets, settings = reference_embeddings(specs, **embed_args)
    if clusters > len(e):
        raise ValueError(f"{clusters} clusters need at least as many faces; the reference "
                         f"sets have {len(e)}")
    name = name or Path(output).stem
    norm = fsn.fit(e, ids, k=clusters, target_fmr=target_fmr, neighbours=neighbours, seed=seed,
                   name=name)
    provenance = {
        "name": name,
        "method": "Fair Score Normalization (Terhorst, Kolf, Damer, Kirchbuchner, Kuijper 2020), "
                  + ("paper's rule: cluster thresholds over all impostor pairs involving the "
                     "cluster" if neighbours is None else
                     f"local rule: cluster thresholds over impostor pairs with the {neighbours} "
                     f"nearest clusters"),
        "data": sets,
        "faces": int(len(e)),
        "people": int(len(set(ids.tolist()))),
        "command": command or "candor eval fit-normalisation " + " ".join(
            f"-r {shlex.quote(s)}" for s in specs),
        "settings": {"clusters": clusters, "target_fmr": target_fmr, "neighbours": neighbours,
                     "seed": seed, "embedding": settings,
                     "labels_used": "identities only (which pairs are impostors)"},
        "date": clock.stamp(),
        "candor_version": __version__,
        "result": {"reference_threshold": round(norm.global_threshold, 6),
                   "offset_min": round(float(norm.offsets.min()), 6),
                   "offset_max": round(float(norm.offsets.max()), 6),
                   "offset_sd": round(float(norm.offsets.std()), 6),
                   "cluster_size_min": int(norm.cluster_sizes.min()),
                   "cluster_size_max": int(norm.cluster_sizes.max())},
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    norm.save(output, provenance)
    return provenance
