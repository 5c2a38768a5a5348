"""Gallery-side augmentation for celebrity recognition: each gallery photo embedded in several
perturbed views (:mod:`candor.face.augment`), measured with the protocol of
bench/celebrities.py (threshold chosen on the development split, measured on the reported one).

    python bench/celebrity_augment.py [--data DIR] [--least 3] [--views a,b,...] [--json OUT]
    python bench/celebrity_augment.py --template-only      # views in the template only
    python bench/celebrity_augment.py --probe rotate-left,rotate-right   # probe-side views

Nothing measured here beat one plain embedding per photo on the development split, so
``candor.service.celebrities.GALLERY_VIEWS`` is empty (the rows: docs/celebrities.md and
bench/celebrity-augment.json).

Each view of each photo of the gallery's people is embedded once (one pass of the network, no
mirror) and cached in the evaluation cache (``eval-embeddings.sqlite`` in the data dir, the
settings key of :mod:`candor.eval.embeddings` + the view's name), with a quality record (the
chip's sharpness, the landmarks' spread in pixels). Queries and outsiders keep their ordinary
embeddings (except with ``--probe``, which embeds the views of every query and outsider
through :func:`candor.eval.celebrities.view_embeddings`, the same cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from celebrities import DEFAULT_DATA, split  # noqa: E402
from celebrity_methods import Split, candor, make_split, threshold_for  # noqa: E402

from candor import config  # noqa: E402
from candor.eval.celebrities import embeddings  # noqa: E402
from candor.eval.embeddings import CACHE_FILE, Cache, _settings_key, file_sha256, settings_for  # noqa: E402
from candor.face.augment import VIEWS, view_chips  # noqa: E402
from candor.face.pipeline import central_face  # noqa: E402
from candor.scoring.similarity import normalise  # noqa: E402

QUALITY = "quality"


def view_key(base: str, view: str) -> str:
    return f"{base}|augment={view}"


def compute(paths: list[Path], views: list[str], data_dir=None) -> dict[str, dict[Path, np.ndarray]]:
    """{view: {photo: unit embedding}} (and QUALITY: [sharpness, spread]); cached."""
    from candor.face.engine import Engine

    settings = settings_for(face="centre")
    base = _settings_key(settings)
    cache = Cache(config.data_dir(data_dir) / CACHE_FILE)
    shas = {p: file_sha256(p) for p in paths}
    names = [*views, QUALITY]
    known = {v: cache.get(list(shas.values()), view_key(base, v)) for v in names}
    todo = [p for p in paths if any(shas[p] not in known[v] for v in names)]
    engine = Engine(backend=settings["backend"], detector=settings["detector"])
    t0 = time.time()
    rows: dict[str, list] = defaultdict(list)
    for i, p in enumerate(todo):
        image, faces = engine.analyse(str(p), attributes=None, landmarks=False)
        face = central_face(image, faces)
        if not face:
            for v in names:
                rows[v].append((shas[p], None, 0, "no face detected"))
            continue
        pts = face[0].landmarks5
        chips = view_chips(engine.backend, image.pixels, pts, views)
        vecs = normalise(engine.backend.embed(chips)) if len(chips) else []
        for v, vec in zip(views, vecs):
            rows[v].append((shas[p], vec, 1, None))
        plain = engine.chips(image, face)[0]
        sharp = cv2.Laplacian(cv2.cvtColor(plain, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
        spread = float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean()))
        rows[QUALITY].append((shas[p], np.array([sharp, spread], np.float32), 1, None))
        if (i + 1) % 50 == 0 or i + 1 == len(todo):
            for v, r in rows.items():
                cache.put(r, view_key(base, v))
            rows.clear()
            print(f"  {i + 1}/{len(todo)} photos, {time.time() - t0:.0f} s", file=sys.stderr,
                  flush=True)
    known = {v: cache.get(list(shas.values()), view_key(base, v)) for v in names}
    cache.close()
    return {v: {p: known[v][shas[p]][0] for p in paths if shas[p] in known[v]} for v in names}


def gallery_vectors(vectors: dict, views: dict, use: list[str], weight: float,
                    quality=None) -> dict:
    """Each photo's gallery embedding: its own plus ``weight`` x the mean of its views."""
    out = {}
    for p, v in vectors.items():
        extra = [views[u][p] for u in use if views[u].get(p) is not None]
        if v is None or not extra:
            out[p] = v
            continue
        out[p] = normalise((v + weight * np.mean(extra, 0))[None])[0]
    return out


def make(by_person, held, outsiders, base, gal) -> Split:
    """make_split with the gallery from ``gal`` and the queries/outsiders from ``base``."""
    s = make_split(by_person, held, outsiders, gal)
    q = make_split(by_person, held, outsiders, base)
    return Split(s.faces, s.owners, q.queries, q.truth, q.outsiders)


def extra_templates(s: Split, by_person, held, views, use) -> Split:
    """Every view stored as one more face of the person (the photo-count term cancels: every
    photo has the same number of views)."""
    names = sorted(by_person)
    faces, owners = [s.faces], [s.owners]
    for u in use:
        for i, name in enumerate(names):
            for p in by_person[name]:
                if p != held.get(name) and views[u].get(p) is not None:
                    faces.append(views[u][p][None])
                    owners.append(np.array([i]))
    return Split(np.concatenate(faces), np.concatenate(owners), s.queries, s.truth, s.outsiders)


class Weighted(Split):
    """A split whose templates are quality-weighted means of the person's photos."""

    weights: np.ndarray = None

    @property
    def templates(self) -> np.ndarray:
        t = np.stack([(self.faces[self.owners == i] * self.weights[self.owners == i, None]).sum(0)
                      for i in range(self.people)])
        return t / np.linalg.norm(t, axis=1, keepdims=True)


def weighted(s: Split, by_person, held, quality, how: str) -> Split:
    """The split with each photo weighted by its quality in the template."""
    names = sorted(by_person)
    w = []
    for name in names:
        for p in by_person[name]:
            if p != held.get(name):
                sharp, spread = quality[p]
                w.append({"sharpness": np.sqrt(sharp), "size": spread,
                          "sharpness-rank": sharp}[how])
    w = np.array(w, float)
    if how == "sharpness-rank":  # within-person: the sharpest photo 2, the blurriest 1
        out = np.ones_like(w)
        for i in range(int(s.owners.max()) + 1):
            m = s.owners == i
            r = np.argsort(np.argsort(w[m]))
            out[m] = 1 + r / max(1, m.sum() - 1)
        w = out
    ws = Weighted(s.faces, s.owners, s.queries, s.truth, s.outsiders)
    ws.weights = w
    return ws


class FixedTemplates(Split):
    """A split whose templates come from elsewhere (the views), its faces staying plain."""

    fixed: np.ndarray = None

    @property
    def templates(self) -> np.ndarray:
        return self.fixed


def evaluate(method, dev: Split, rep: Split) -> tuple:
    _, out = method(dev, dev.outsiders)
    t = threshold_for(out)
    res = []
    for s in (dev, rep):
        best, score = method(s, s.queries)
        _, o = method(s, s.outsiders)
        res += [float(np.mean((best == s.truth) & (score >= t))), float(np.mean(o >= t)),
                float(np.mean(best == s.truth))]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--least", type=int, default=3)
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--compute-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    ap.add_argument("--probe", default="",
                    help="views (comma-separated) of the queries and outsiders: only the "
                    "probe-side rows (needs those views of the outsiders too)")
    ap.add_argument("--template-only", action="store_true",
                    help="only the rows where the views enter the template, not the photos")
    args = ap.parse_args()
    lfw = args.data / "lfw"
    views = [v for v in args.views.split(",") if v]
    by_person, _ = split(lfw, False)
    paths = sorted({p for ps in by_person.values() for p in ps})
    base = embeddings(paths, data_dir=args.cache)
    people = {n: p for n, p in by_person.items() if len(p) >= args.least}
    gallery_paths = sorted({p for ps in people.values() for p in ps})
    aug = compute(gallery_paths, views, args.cache)
    if args.compute_only:
        return 0
    splits = {}
    for dev in (True, False):
        bp, outsiders = split(lfw, dev)
        held = {n: (p[0] if dev else p[-1]) for n, p in people.items()}
        splits[dev] = (held, outsiders)

    table: list[dict] = []

    def row(label, gal=None, use=(), extra=False, method=candor, quality=None,
            template_only=False):
        made = []
        for dev in (True, False):
            held, outsiders = splits[dev]
            s = make(people, held, outsiders, base, gal or base)
            if template_only:
                fixed = s.templates
                s = FixedTemplates(*vars(make(people, held, outsiders, base, base)).values())
                s.fixed = fixed
            if extra:
                s = extra_templates(s, people, held, aug, use)
            if quality:
                s = weighted(s, people, held, aug[QUALITY], quality)
            made.append(s)
        r = evaluate(method, *made)
        table.append({"method": label, "dev_right": r[0], "dev_outsiders": r[1],
                      "right": r[3], "outsiders": r[4], "rank1": r[5]})
        print(f"| {label} | {r[0]:.1%} | {r[1]:.1%} | **{r[3]:.1%}** | {r[4]:.1%} | {r[5]:.1%} |",
              flush=True)

    print(f"\ngallery of people with >= {args.least} photos: {len(people)}\n")
    print("| gallery embedding | development: right | outsiders | reported: right | outsiders "
          "| rank-1 |")
    print("|---|---|---|---|---|---|")
    groups = {"shifts": [v for v in views if v.startswith("shift")],
              "zooms": [v for v in views if v.startswith("zoom")],
              "rotations": [v for v in views if v.startswith("rotate")],
              "geometry": [v for v in views if v.split("-")[0] in ("shift", "zoom", "rotate")],
              "photometric": [v for v in views if v.split("-")[0] in ("blur", "gamma")],
              "all": views}
    row("one embedding per photo (candor now)")
    if args.probe:
        return probe_rows(args, people, splits, base, aug, table)
    if args.template_only:
        for g in ("rotations", "geometry", "all"):
            use = groups[g]
            for w in (0.5, 1.0):
                row(f"views in the template only: {g} ({len(use)} views), weight {w}",
                    gallery_vectors(base, aug, use, w), template_only=True)
        return write(args, people, table)
    for v in views:
        row(f"+ view {v} (weight 1)", gallery_vectors(base, aug, [v], 1.0))
    for g, use in groups.items():
        if not use:
            continue
        for w in (0.5, 1.0, 2.0):
            row(f"+ mean of {g} ({len(use)} views), weight {w}", gallery_vectors(base, aug, use, w))
        row(f"{g} as extra templates", use=use, extra=True)
    for how in ("sharpness", "size", "sharpness-rank"):
        row(f"template weighted by {how}", quality=how)
    return write(args, people, table)


def probe_rows(args, people, splits, base, aug, table) -> int:
    """Views of the query: always, on both sides, or only when the plain score is near the
    plain method's development threshold (a bounded extra cost at recognition)."""
    from candor.eval.celebrities import view_embeddings

    use = [v for v in args.probe.split(",") if v]
    probes = sorted(p for p, v in base.items() if v is not None)
    extra = view_embeddings(probes, use, args.cache)
    for u in use:
        aug.setdefault(u, {}).update(extra[u])
    for w in (0.5, 1.0):
        both = gallery_vectors(base, aug, use, w)
        made = []
        for dev in (True, False):
            held, outsiders = splits[dev]
            made.append((make(people, held, outsiders, base, base),
                         make(people, held, outsiders, both, base)))
        for label, pick in ((f"probe views ({'+'.join(use)}, weight {w}) always, gallery plain",
                             lambda pl, au: au),):
            r = evaluate(candor, *[pick(*m) for m in made])
            emit(table, label, r)
        made2 = []
        for dev in (True, False):
            held, outsiders = splits[dev]
            made2.append(make(people, held, outsiders, both, both))
        emit(table, f"views ({'+'.join(use)}, weight {w}) on both sides, probe too",
             evaluate(candor, *made2))
        plain_dev = made[0][0]
        t0 = threshold_for(candor(plain_dev, plain_dev.outsiders)[1])
        for band in (0.005, 0.01, 0.02):
            def near(s_plain: Split, s_aug: Split, x_plain, x_aug, t0=t0, band=band):
                b0, sc0 = candor(s_plain, x_plain)
                b1, sc1 = candor(s_aug, x_aug)
                close = np.abs(sc0 - t0) <= band
                return np.where(close, b1, b0), np.where(close, sc1, sc0), float(close.mean())

            out = []
            shares = []
            for pl, au in made:
                out.append((near(pl, au, pl.queries, au.queries), near(pl, au, pl.outsiders, au.outsiders),
                            pl.truth))
                shares.append(out[-1][1][2])
            t = threshold_for(out[0][1][1])
            r = []
            for (bq, sq, _), (_, so, _), truth in out:
                r += [float(np.mean((bq == truth) & (sq >= t))), float(np.mean(so >= t)),
                      float(np.mean(bq == truth))]
            emit(table, f"probe views ({'+'.join(use)}, weight {w}) only within {band} of the "
                 f"plain threshold ({shares[0]:.0%} of dev outsiders re-embedded)", r)
    return write(args, people, table)


def emit(table: list[dict], label: str, r: list) -> None:
    table.append({"method": label, "dev_right": r[0], "dev_outsiders": r[1],
                  "right": r[3], "outsiders": r[4], "rank1": r[5]})
    print(f"| {label} | {r[0]:.1%} | {r[1]:.1%} | **{r[3]:.1%}** | {r[4]:.1%} | {r[5]:.1%} |",
          flush=True)


def write(args, people: dict, table: list[dict]) -> int:
    if args.json:
        args.json.write_text(json.dumps({"people": len(people), "least_photos": args.least,
                                         "load_average": os.getloadavg()[0], "rows": table},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
