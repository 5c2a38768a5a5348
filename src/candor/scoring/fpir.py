"""False-positive identification rate (FPIR): what a per-pair threshold means for a search.

A search compares the probe with every one of the N faces (or users) in a collection, so the
chance that a probe of someone who is *not enrolled* returns at least one candidate at or
above Similarity S grows with N:

    FPIR(S, N) = 1 - (1 - G(S))^N            (<= N G(S), the union bound)

G(S) is the per-pair false match rate of *different people* at S, for search
(:func:`search_false_match_rate`): measured, not the Similarity table's promise F(S). The table
promises the worst of its reference sets (``combine: max``: FairFace half 1 everywhere above
60), and its FairFace "impostor" pairs include photos of the same person: FairFace is said to
hold one photo per person, but of its half 1's 176 pairs at Similarity >= 92, 64 show one
person twice (reviewed by eye, ``bench/fpir-fairface-same-person.json``), and above 96 most do.
Those pairs are genuine matches counted as false ones, so F(S) overstates the false-match rate
2x at 93 and 5x at 96, and the default built on it was 2 points too high (FPIR 0 of 500 on LFW
where 1% was promised). :data:`SEARCH_FMR` is G measured on the same FairFace half 1 (the
reference set the table and the normalisation were fitted on; no LFW photo, and no photo of
FairFace half 2) with one photo kept of each person seen twice: 2,369 faces, 2.8 M pairs of
different people (``python bench/fpir_calibration.py --knots``). Beyond its last knot (96.5,
10 false matches: the least this set can measure) G follows the table's slope.

candor chooses the default search threshold from the collection's current size: the lowest
Similarity at which FPIR(S, N) stays at or below :data:`TARGET_FPIR` (1%), never below the
identification floor (:data:`candor.scoring.similarity.IDENTIFICATION_THRESHOLD`, the point
chosen for the demographic differentials) and never above :data:`MAX_CALIBRATED` (99). Past
about 5,300 faces even 99 cannot hold 1% by this model: the default stays at 99 and
:func:`fpir` says what it is there (docs/fairness.md, "Thresholds for search").

**Independence.** The formula treats a probe's N comparisons as independent chances; on
galleries drawn from the fit set the measured max-of-N FPIR is at or below it, on held-out
FairFace half 2 (its repeated people removed the same way) 15-30% above it (1.16% at the
default for 243 faces), on LFW well below it (0.4%): ``bench/fpir_calibration.py``,
docs/fairness.md section 8.1.

**What N counts.** For SearchFaces / SearchFacesByImage N is the collection's faces: photos of
one person are close to independent chances for a stranger to match (measured with
``bench/fpir_calibration.py``: a person's 3 photos raise the false-match chance 2.6-3.0x over
one, on LFW and on FairFace probes), so counting people instead would under-promise about 3x.
For SearchUsers / SearchUsersByImage a user is matched through one template, the unit mean of
the user's faces (:func:`candor.store.users.unit_mean`), but a template's impostor tail is
heavier than one photo's, so N counts the faces behind the users' templates too
(:func:`user_search_size`), not the users.

An explicit ``FaceMatchThreshold`` / ``UserMatchThreshold`` keeps Rekognition's per-pair
meaning; only an omitted one is size-aware. ``candor eval identification`` measures FPIR and
FNIR at the default on a labelled folder tree (docs/fairness.md section 8).
"""

from __future__ import annotations

import math
from bisect import bisect_left

from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, false_match_rate

#: the false-positive identification rate an omitted search threshold is chosen to hold
TARGET_FPIR = 0.01
#: the highest Similarity a default can take (the table calibrates up to 1e-5 there)
MAX_CALIBRATED = 99.0
#: thresholds DescribeCollection and ``candor collection describe`` report the FPIR at
COMMON_THRESHOLDS = (80.0, 85.0, 90.0, 95.0, 99.0)
#: G(S): (Similarity, per-pair false match rate of different people) measured on FairFace
#: validation half 1 with one photo kept of each person it shows twice (2,369 faces,
#: 2,804,896 pairs; normalisation-v1, hog+cnn, centre face). Made by
#: ``python bench/fpir_calibration.py --knots``; see the module docstring.
SEARCH_FMR = (
    (80.0, 9.30e-04), (80.5, 8.23e-04), (81.0, 7.28e-04), (81.5, 6.48e-04), (82.0, 5.75e-04),
    (82.5, 5.09e-04), (83.0, 4.52e-04), (83.5, 4.02e-04), (84.0, 3.54e-04), (84.5, 3.12e-04),
    (85.0, 2.76e-04), (85.5, 2.42e-04), (86.0, 2.12e-04), (86.5, 1.85e-04), (87.0, 1.62e-04),
    (87.5, 1.42e-04), (88.0, 1.23e-04), (88.5, 1.06e-04), (89.0, 9.20e-05), (89.5, 7.91e-05),
    (90.0, 6.81e-05), (90.5, 5.70e-05), (91.0, 4.71e-05), (91.5, 3.92e-05), (92.0, 3.24e-05),
    (92.5, 2.64e-05), (93.0, 2.25e-05), (93.5, 1.75e-05), (94.0, 1.39e-05), (94.5, 9.98e-06),
    (95.0, 7.49e-06), (95.5, 5.70e-06), (96.0, 4.28e-06), (96.5, 3.57e-06),
)
#: what G(S) was measured on (DescribeCollection's ``Formula`` names it)
SEARCH_FMR_SOURCE = "FairFace validation half 1, one photo per person (bench/fpir_calibration.py)"


def search_false_match_rate(similarity: float) -> float:
    """G(S): the per-pair false match rate of two different people at Similarity ``similarity``
    (:data:`SEARCH_FMR`, log-linear between knots; outside them, the table's promise scaled to
    the nearest knot). Non-increasing in ``similarity``."""
    s = float(similarity)
    xs = [k[0] for k in SEARCH_FMR]
    if s <= xs[0] or s >= xs[-1]:
        edge = SEARCH_FMR[0] if s <= xs[0] else SEARCH_FMR[-1]
        return min(1.0, edge[1] * false_match_rate(s) / false_match_rate(edge[0]))
    i = bisect_left(xs, s)
    (x0, g0), (x1, g1) = SEARCH_FMR[i - 1], SEARCH_FMR[i]
    w = (s - x0) / (x1 - x0)
    return math.exp((1 - w) * math.log(g0) + w * math.log(g1))


def fpir(similarity: float, size: int) -> float:
    """The expected FPIR of a search at per-pair threshold ``similarity`` over ``size``
    enrolled faces (or users), for a probe of someone not enrolled."""
    if size <= 0:
        return 0.0
    g = search_false_match_rate(similarity)
    return float(-math.expm1(size * math.log1p(-g))) if g < 1 else 1.0


def similarity_for_fmr(fmr: float) -> float:
    """The inverse of :func:`false_match_rate`: the Similarity whose promised FMR is ``fmr``
    (50 - 10 log10 F down to 1e-4, then nine points per decade)."""
    if fmr >= 1.0:
        return 50.0
    lg = -math.log10(fmr)
    return 50.0 + 10.0 * lg if lg <= 4.0 else 90.0 + 9.0 * (lg - 4.0)


def threshold_for_size(size: int, target: float = TARGET_FPIR) -> float:
    """The lowest per-pair Similarity (to 0.01, up to 100) at which a search over ``size``
    items has FPIR <= ``target``."""
    if size <= 0:
        return 0.0
    lo, hi = 0, 10000                     # hundredths of a Similarity point
    if fpir(hi / 100, size) > target:
        return 100.0
    while lo < hi:                        # fpir is non-increasing in the threshold
        mid = (lo + hi) // 2
        if fpir(mid / 100, size) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo / 100


def default_search_threshold(size: int, target: float = TARGET_FPIR,
                             floor: float = IDENTIFICATION_THRESHOLD) -> float:
    """The threshold a search runs with when the request names none: the lowest at which the
    FPIR for a collection of ``size`` faces (users) stays <= ``target``, between ``floor`` and
    :data:`MAX_CALIBRATED`. Non-decreasing in ``size``."""
    return min(MAX_CALIBRATED, max(floor, threshold_for_size(size, target)))


def user_search_size(users: int, user_faces: int) -> int:
    """N for a search of the collection's users: the faces associated with its users (each
    template carries its faces' impostor risk; module docstring), at least the users that
    have a template."""
    return max(int(user_faces), 0) if users > 0 else 0


def describe(size: int, thresholds=COMMON_THRESHOLDS) -> dict:
    """What DescribeCollection and ``candor collection describe`` report for ``size``."""
    default = default_search_threshold(size)
    return {
        "CollectionSize": size,
        "DefaultSearchThreshold": default,
        "FpirAtDefault": fpir(default, size),
        "TargetFpir": TARGET_FPIR,
        "FpirTargetMet": fpir(default, size) <= TARGET_FPIR + 1e-12,
        "FpirAtThresholds": [{"Similarity": float(t), "Fpir": fpir(t, size)} for t in thresholds],
        "Formula": f"FPIR(S, N) = 1 - (1 - G(S))^N; G measured on {SEARCH_FMR_SOURCE}",
    }
