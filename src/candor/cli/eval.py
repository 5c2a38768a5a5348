"""``candor eval``: measure accuracy, calibrate Similarity, measure demographic differentials.

Added to ``candor`` by ``register``; every command writes ``summary.json`` and a
self-contained ``report.html`` to ``--output`` and, with ``--json``, prints the summary.
The module runs a little over 400 lines: six commands, most of it their typed options.
"""

from __future__ import annotations

import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import (
    BackendOption,
    DataDirOption,
    cli_errors,
    console,
    err_console,
    fail,
    print_json,
    progress_bar,
    settings,
)
from candor.eval import fit_normalisation as fit_normalisation_module  # noqa: E402

app = typer.Typer(name="eval", no_args_is_help=True,
                  help="Measure accuracy, calibrate Similarity and measure demographic "
                       "differentials; writes JSON and HTML reports.")

OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Folder for summary.json and report.html.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the JSON summary on stdout.")]
EvalDetector = Annotated[str | None, typer.Option(
    "--detector", help="hog, cnn, hog+cnn or yunet [default: the engine's default].")]
FaceOption = Annotated[str, typer.Option(
    "--face", help="Which face of a photo is the subject: centre (nearest the image centre; "
                   "for face crops such as LFW and FairFace) or largest.")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", help="Threads decoding and detecting photos [default: one more than the cores].")]
NoCacheOption = Annotated[bool, typer.Option(
    "--no-cache", help="Embed every photo again instead of using the embedding cache.")]
BootstrapOption = Annotated[int, typer.Option(
    "--bootstrap", min=0, help="Bootstrap resamples for the intervals.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
ThresholdsOption = Annotated[str, typer.Option(
    "--thresholds", help="Similarity thresholds to report, comma-separated.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="eval")


def _scoring(data_dir):
    """The scoring the command measures: the settings' (``candor --no-normalisation``,
    CANDOR_NORMALISATION, CANDOR_SIMILARITY_TABLE), exactly as the engine would score."""
    from candor.scoring.similarity import Scoring

    return Scoring.from_settings(settings(data_dir))


def _command() -> str:
    return "candor " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"--thresholds must be numbers separated by commas, not {text!r}")
    if not values or any(not 0 <= v <= 100 for v in values):
        fail("--thresholds must be Similarity values from 0 to 100")
    return values


@contextmanager
def _progress(enabled: bool = True):
    """A Rich progress bar per photo set being embedded (on stderr, gone when done)."""
    progress = progress_bar(not enabled, elapsed=True, stderr=True)

    def factory(label: str):
        task = progress.add_task(f"embedding {label}", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return update

    with progress:
        yield factory


def _finish(result: dict, output: Path | None, json_output: bool, started: float) -> dict:
    from candor.eval import report

    result["seconds"] = round(time.perf_counter() - started, 2)
    paths = report.write(result, output, _command()) if output else None
    data = report.summary(result)
    data["command"] = _command()
    if json_output:
        print_json(data)
    elif paths:
        err_console.print(f"report: {paths['html']}\nsummary: {paths['json']}", highlight=False)
    return data


@app.command()
def verification(
    pairs: Annotated[Path, typer.Option("--pairs", help="Pair list: LFW pairs format (pairs.txt, "
                                        "pairsDevTest.txt) or CSV image_a,image_b,same.")],
    images: Annotated[Path, typer.Option("--images", help="Folder the pair list's paths are in.")],
    train_pairs: Annotated[Path | None, typer.Option(
        "--train-pairs", help="Pairs to choose the accuracy threshold on (e.g. "
                              "pairsDevTrain.txt); files with folds use 10-fold instead.")] = None,
    all_pairs: Annotated[bool, typer.Option(
        "--all-pairs/--listed-only", help="Also measure every same- and different-person pair "
                                          "among the photos (when the file names people).")] = True,
    thresholds: ThresholdsOption = "80,90,95,99",
    output: OutputOption = None,
    json_output: JsonOut = False,
    bootstrap: BootstrapOption = 200,
    seed: SeedOption = 0,
    backend: BackendOption = None,
    detector: EvalDetector = None,
    face: FaceOption = "centre",
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Accuracy, AUC, EER, TAR@FAR and FMR/FNMR at Similarity thresholds on a pair list."""
    from candor.eval import verification as ver

    started = time.perf_counter()
    levels = _thresholds(thresholds)
    with cli_errors(), _progress(not json_output) as progress:
        result = ver.run(pairs, images, train_pairs=train_pairs, thresholds=levels,
                         all_pairs=all_pairs, bootstrap=bootstrap, seed=seed, backend=backend,
                         detector=detector, face=face, data_dir=data_dir, workers=workers,
                         use_cache=not no_cache, progress=progress(pairs.name),
                         normalised=_scoring(data_dir))
    data = _finish(result, output, json_output, started)
    if not json_output:
        _print_verification(data)


@app.command()
def calibrate(
    reference: Annotated[list[str], typer.Option(
        "--reference", "-r", help="Image set to fit on (repeatable): a <person>/<photo> folder, "
                                  "a labels .csv, or an LFW pairs .txt; append @K/N for the "
                                  "K-th of N disjoint parts (split by person).")],
    check: Annotated[list[str] | None, typer.Option(
        "--check", "-c", help="Held-out image set to test the table on (repeatable).")] = None,
    images: Annotated[Path | None, typer.Option(
        "--images", help="Photo folder for labels CSVs [default: the CSV's folder].")] = None,
    combine: Annotated[str, typer.Option(
        "--combine", help="How several reference sets combine: max (the promise holds on each), "
                          "mean (equal weights) or pooled (all pairs together).")] = "max",
    write_table: Annotated[Path | None, typer.Option(
        "--write-table", help="Install the fitted table into this tables file (the shipped one "
                              "is src/candor/data/similarity-table.json).")] = None,
    thresholds: ThresholdsOption = "80,90,95,99",
    output: OutputOption = None,
    json_output: JsonOut = False,
    bootstrap: BootstrapOption = 200,
    seed: SeedOption = 0,
    backend: BackendOption = None,
    detector: EvalDetector = None,
    face: FaceOption = "centre",
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Fit the Similarity table (Similarity -> false match rate) on reference sets and check it."""
    from candor.eval import calibration

    if combine not in calibration.COMBINE:
        fail(f"--combine must be one of {', '.join(calibration.COMBINE)}")
    started = time.perf_counter()
    levels = _thresholds(thresholds)
    with cli_errors(), _progress(not json_output) as progress:
        result = calibration.run(reference, check or [], images=images, combine=combine,
                                 levels=levels, bootstrap=bootstrap, seed=seed, backend=backend,
                                 detector=detector, face=face, data_dir=data_dir,
                                 workers=workers, use_cache=not no_cache, progress=progress,
                                 command=_command(), normalised=_scoring(data_dir))
    if write_table:
        calibration.install_table(result["table"], write_table)
    if output:
        (Path(output)).mkdir(parents=True, exist_ok=True)
        calibration.install_table(result["table"], Path(output) / "similarity-table.json")
    data = _finish(result, output, json_output, started)
    if not json_output:
        _print_calibration(data)
        if write_table:
            err_console.print(f"table installed in {write_table} under {data['table']['score']!r}")


@app.command()
def fairness(
    labels: Annotated[Path, typer.Option(
        "--labels", help="Labels CSV: a 'file' column (or 'person' for <person>/<photo> "
                         "folders), group columns, optionally 'identity'.")],
    images: Annotated[Path | None, typer.Option(
        "--images", help="Photo folder [default: the CSV's folder].")] = None,
    group_by: Annotated[str, typer.Option(
        "--group-by", help="Columns to group by, comma-separated; a+b for intersections "
                           "(race+gender).")] = "race,gender",
    identity_column: Annotated[str | None, typer.Option(
        "--identity-column", help="Column naming the person in each photo [default: identity "
                                  "or person if present, else every photo is a different "
                                  "person].")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=2, help="Use only the first N rows of the labels (a quick look).")] = None,
    thresholds: ThresholdsOption = "80,90,95,99",
    output: OutputOption = None,
    json_output: JsonOut = False,
    bootstrap: BootstrapOption = 500,
    seed: SeedOption = 0,
    backend: BackendOption = None,
    detector: EvalDetector = None,
    face: FaceOption = "centre",
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
    data_dir: DataDirOption = None,
    compare: Annotated[bool, typer.Option(
        "--compare/--no-compare", help="With score normalisation on, also measure without it "
                                       "and report both side by side.")] = True,
    fit_on: Annotated[list[str] | None, typer.Option(
        "--fit-on", help="Cross-dataset: fit a normalisation and its Similarity tables on this "
                         "image set only (repeatable; e.g. lfw/pairsDevTrain.txt) and report "
                         "it beside the shipped scoring.")] = None,
) -> None:
    """Per-group detection rate, FMR (and FNMR) at each threshold, and the differentials."""
    from candor.eval import fairness as fair

    started = time.perf_counter()
    levels = _thresholds(thresholds)
    specs = [g.strip() for g in group_by.split(",") if g.strip()]
    if not specs:
        fail("--group-by needs at least one column")
    with cli_errors(), _progress(not json_output) as progress:
        result = fair.run(labels, images, group_by=specs, thresholds=levels,
                          normalised=_scoring(data_dir),
                          bootstrap=bootstrap, seed=seed, identity_column=identity_column,
                          limit=limit, backend=backend, detector=detector, face=face,
                          data_dir=data_dir, workers=workers, use_cache=not no_cache,
                          progress=progress(labels.name), compare=compare, fit_on=fit_on)
    data = _finish(result, output, json_output, started)
    if not json_output:
        _print_fairness(data)


@app.command()
def identification(
    images: Annotated[Path, typer.Option(
        "--images", help="Labelled folder tree <person>/<photo> (e.g. LFW View 1).")],
    min_photos: Annotated[int, typer.Option(
        "--min-photos", min=2, help="People with at least this many photos are enrolled.")] = 5,
    enrolled: Annotated[int, typer.Option(
        "--enrolled", min=1, help="Photos indexed per enrolled person; the rest are mated "
                                  "probes.")] = 3,
    non_mated: Annotated[int, typer.Option(
        "--non-mated", min=0, help="People outside the gallery searched (one photo each).")] = 500,
    thresholds: ThresholdsOption = "80,85,90,95,99",
    output: OutputOption = None,
    json_output: JsonOut = False,
    seed: SeedOption = 0,
    backend: BackendOption = None,
    detector: EvalDetector = None,
    users: Annotated[bool, typer.Option(
        "--users", help="Also enrol each person as a user (AssociateFaces) and search with "
                        "SearchUsersByImage: identity-level search.")] = False,
) -> None:
    """Rank-1, FPIR and FNIR of 1:N search through IndexFaces and SearchFacesByImage."""
    from candor.eval import identification as ident

    started = time.perf_counter()
    levels = _thresholds(thresholds)
    if enrolled >= min_photos:
        fail("--enrolled must be smaller than --min-photos (each person needs probes)")
    with cli_errors(), _progress(not json_output) as progress:
        result = ident.run(images, min_photos=min_photos, enrolled=enrolled,
                           non_mated=non_mated, seed=seed, thresholds=levels, backend=backend,
                           detector=detector, users=users, progress=progress(images.name))
    data = _finish(result, output, json_output, started)
    if not json_output:
        table = Table(title=f"1:N search: {data['gallery_people']} people, {data['gallery_faces']} "
                            f"faces; rank-1 {_pct(data['rank1'])}")
        for col in ("Similarity", "FNIR", "FPIR", "FPIR promised"):
            table.add_column(col, justify="right")
        for r in data["thresholds"]:
            table.add_row(f"{r['threshold']:g}" + (" (default)" if r["is_default"] else ""),
                          _pct(r["fnir"]), _pct(r["fpir"]), _pct(r["fpir_formula"]))
        console.print(table)


# -- terminal summaries --------------------------------------------------------------------
def _rate(v) -> str:
    from candor.templates.filters import fmt_rate

    return fmt_rate(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _print_verification(d: dict) -> None:
    a = d["accuracy"]
    console.print(f"[b]{d['pairs_file']}[/b]: {d['pairs']} pairs, {d['photos']} photos, "
                  f"{d['photos_without_face']} without a detected face "
                  f"({d['pairs_with_missing_face']['total']} pairs affected, scored as non-matches)")
    if "kfold" in a:
        k = a["kfold"]
        console.print(f"accuracy ({k['folds']}-fold): {_pct(k['mean'])} ± {_pct(k['std'])}")
    if "train_test" in a:
        t = a["train_test"]
        console.print(f"accuracy (threshold {t['threshold']:.2f} chosen on the training pairs): "
                      f"{_pct(t['accuracy'])}")
    console.print(f"accuracy at the default threshold 80: {_pct(a['at_default_threshold']['accuracy'])}")
    for name in ("listed_pairs", "all_pairs"):
        if name not in d:
            continue
        b = d[name]
        table = Table(title=f"{name.replace('_', ' ')}: {b['genuine_pairs']:,} same, "
                            f"{b['impostor_pairs']:,} different; AUC "
                            f"{'n/a' if b['auc'] is None else format(b['auc'], '.4f')}, "
                            f"EER {_pct(b['eer']['eer'])}")
        for col in ("Similarity", "FMR", "false matches", "FNMR"):
            table.add_column(col, justify="right")
        for r in b["at_threshold"]:
            table.add_row(f"{r['threshold']:g}", _rate(r["fmr"]), f"{r['false_matches']:,}",
                          _pct(r["fnmr"]))
        console.print(table)
        console.print("  TAR@FAR: " + ", ".join(
            f"{r['far']:g} → {_pct(r['tar'])}" if r["tar"] is not None else f"{r['far']:g} → n/a"
            for r in b["tar_at_far"]))


def _print_calibration(d: dict) -> None:
    for c in d["checks"]:
        table = Table(title=f"{c['name']} ({'held out' if c['held_out'] else 'fitted on'}): "
                            f"{c['impostor_pairs']:,} different-person pairs")
        for col in ("Similarity", "promised FMR", "measured FMR", "false matches", "ratio",
                    "within 3x", "FNMR"):
            table.add_column(col, justify="right")
        for r in c["rows"]:
            table.add_row(f"{r['similarity']:g}", _rate(r["promised_fmr"]), _rate(r["fmr"]),
                          f"{r['false_matches']:,}",
                          f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
                          "yes" if r["within_factor_3"] else "[red]no[/red]", _pct(r["fnmr"]))
        console.print(table)


def _print_fairness(d: dict) -> None:
    for spec, g in d["groupings"].items():
        table = Table(title=f"by {spec}")
        table.add_column("group", justify="left")
        table.add_column("detected", justify="right")
        for t in d["thresholds"]:
            table.add_column(f"FMR@{t:g}", justify="right")
        for r in g["groups"]:
            rates = [_rate(f["fmr"]) for f in r["fmr"]] if r.get("fmr") else \
                ["-"] * len(d["thresholds"])
            table.add_row(r["group"], _pct(r["detection_rate"]), *rates)
        console.print(table)
        for m in d.get("not_measured", []):
            if m["grouping"] == spec:
                console.print(f"  not measured: {escape(str(m['group']))}: {m['reason']}")
        for r in g["differentials"]:
            f = r["fmr"]
            mm = f"{f['max_over_min']:.1f}" if f.get("max_over_min") is not None else "inf"
            mg = f"{f['max_over_geomean']:.1f}" if f.get("max_over_geomean") is not None else "inf"
            console.print(f"  Similarity {r['threshold']:g}: highest FMR {_rate(f.get('max'))} "
                          f"({f.get('highest_group')}), max/min {mm}, max/geomean {mg}")


@app.command("fit-normalisation")
def fit_normalisation(
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
        "--detector", help="hog, cnn, hog+cnn or yunet [default: the engine's default].")] = None,
    face: Annotated[str, typer.Option(
        "--face", help="centre (face nearest the image centre) or largest.")] = "centre",
    workers: Annotated[int | None, typer.Option("--workers", help="Embedding processes.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed every photo again.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Fit score-normalisation parameters (no demographic labels) on reference photo sets."""
    if not 0 < target_fmr < 1:
        fail("--target-fmr must be between 0 and 1")
    cmd = "candor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with cli_errors(), _progress() as progress:
        try:
            prov = fit_normalisation_module.run(reference, output, clusters=clusters, target_fmr=target_fmr,
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
