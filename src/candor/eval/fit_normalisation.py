"""``candor eval fit-normalisation``: fit Fair Score Normalization on reference photo sets.

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

import datetime
import hashlib
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from candor import __version__
from candor import normalisation as fsn
from candor.cli_common import BackendOption, DataDirOption, cli_errors, console, err_console, fail


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
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
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


def command(
    reference: Annotated[list[str], typer.Option(
        "--reference", "-r", help="Reference image set (repeatable): a <person>/<photo> folder, a "
                                  "labels .csv or an LFW pairs .txt, optionally @K/N (the K-th of "
                                  "N parts, split by person). Only identities are read.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Parameters file to write (.npz; provenance beside it as .json). "
                               "The shipped one is src/candor/data/normalisation-v1.npz.")],
    clusters: Annotated[int, typer.Option("--clusters", "-k", min=1,
                                          help="k-means clusters.")] = 100,
    target_fmr: Annotated[float, typer.Option(
        "--target-fmr", min=0, max=1, help="False match rate at which each cluster's threshold "
                                           "is taken.")] = 1e-2,
    neighbours: Annotated[int, typer.Option(
        "--neighbours", min=-1, help="Nearest clusters whose pairs set a cluster's threshold; "
                                     "-1 for the paper's rule (all pairs involving the "
                                     "cluster).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="k-means seed.")] = 0,
    images: Annotated[Path | None, typer.Option(
        "--images", help="Photo folder for labels CSVs [default: the CSV's folder].")] = None,
    backend: BackendOption = None,
    detector: Annotated[str | None, typer.Option(
        "--detector", help="hog, cnn or hog+cnn [default: the engine's default].")] = None,
    face: Annotated[str, typer.Option(
        "--face", help="centre (face nearest the image centre) or largest.")] = "centre",
    workers: Annotated[int | None, typer.Option("--workers", help="Embedding processes.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed every photo again.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Fit score-normalisation parameters (no demographic labels) on reference photo sets."""
    from candor.eval.cli import _progress

    if not 0 < target_fmr < 1:
        fail("--target-fmr must be between 0 and 1")
    cmd = "candor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with cli_errors(), _progress() as progress:
        try:
            prov = run(reference, output, clusters=clusters, target_fmr=target_fmr,
                       neighbours=None if neighbours < 0 else neighbours, seed=seed,
                       command=cmd, images=images, backend=backend, detector=detector,
                       face=face, data_dir=data_dir, workers=workers, use_cache=not no_cache,
                       progress=progress)
        except ValueError as exc:
            fail(str(exc))
    r = prov["result"]
    console.print(f"{prov['faces']:,} faces of {prov['people']:,} people, {clusters} clusters: "
                  f"offsets {r['offset_min']:+.4f} .. {r['offset_max']:+.4f} "
                  f"(sd {r['offset_sd']:.4f})")
    err_console.print(f"wrote {output} and {Path(output).with_suffix('.json')}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("fit-normalisation")(command)
