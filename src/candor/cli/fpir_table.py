"""The false-positive identification rate of a collection's searches, as ``candor collection
describe`` prints it (DescribeCollection's ``CandorSearchFpir``; docs/fairness.md section 7)."""

from __future__ import annotations

from rich.table import Table

from candor.cli.common import console


def print_fpir(block: dict) -> None:
    """The false-positive identification rate of a search of this collection (docs/fairness.md):
    per common threshold, and the size-aware default a search without a threshold runs at."""
    for kind in ("Faces", "Users"):
        d = block.get(kind)
        if not d:
            continue
        t = Table(title=f"search of {d['CollectionSize']} {kind.lower()}: FPIR for a probe of "
                        f"someone not enrolled ({d['Formula']})")
        t.add_column("Similarity", justify="right")
        t.add_column("FPIR", justify="right")
        for row in d["FpirAtThresholds"]:
            t.add_row(f"{row['Similarity']:g}", f"{row['Fpir']:.2%}")
        t.add_row(f"{d['DefaultSearchThreshold']:g} (default)", f"{d['FpirAtDefault']:.2%}")
        console.print(t)
        if not d["FpirTargetMet"]:
            console.print(f"[yellow]{kind.lower()}: no calibrated threshold keeps FPIR at "
                          f"{d['TargetFpir']:.0%}; searches default to {d['DefaultSearchThreshold']:g}"
                          "[/yellow]")
