"""False-positive identification rate (FPIR): what a per-pair threshold means for a search.

The Similarity table promises a per-pair false match rate F(S) (1e-3 at 80, 1e-4 at 90, 1e-5 at
99: :func:`candor.scoring.similarity.false_match_rate`). A search compares the probe with every
one of the N faces (or users) in a collection, so the chance that a probe of someone who is
*not enrolled* returns at least one candidate at or above S grows with N:

    FPIR(S, N) = 1 - (1 - F(S))^N            (<= N F(S), the union bound, whatever the
                                               correlation between the N comparisons)

This is the ACLU's 28 members of Congress: Rekognition's per-pair 80 against a 25,000-photo
gallery is FPIR 1 - (1 - 1e-3)^25000 ~ 100%. candor therefore chooses the default search
threshold from the collection's current size: the lowest Similarity at which FPIR(S, N) stays
at or below :data:`TARGET_FPIR` (1%), never below the identification floor
(:data:`candor.scoring.similarity.IDENTIFICATION_THRESHOLD`, the point chosen for the
demographic differentials) and never above :data:`MAX_CALIBRATED` (99, the highest Similarity
the table's data calibrates). Past N = 1,000 faces even 99 cannot hold 1%: the default stays
at 99 and :func:`fpir` says what it is there (docs/fairness.md, "Thresholds for search").

**What N counts.** For SearchFaces / SearchFacesByImage N is the collection's faces: photos of
one person are close to independent chances for a stranger to match (measured with
``bench/fpir_calibration.py``: a person's 3 photos raise the false-match chance 2.6-3.0x over
one, on LFW and on FairFace probes), so counting people instead would under-promise about 3x.
For SearchUsers / SearchUsersByImage a user is matched through one template, the unit mean of
the user's faces (:func:`candor.store.users.unit_mean`), but a template's impostor tail is
heavier than one photo's (measured: 1.0-2.1x the per-pair promise with 3 faces a user, where a
single photo is below it), so N counts the faces behind the users' templates too
(:func:`user_search_size`), not the users.

An explicit ``FaceMatchThreshold`` / ``UserMatchThreshold`` keeps Rekognition's per-pair
meaning; only an omitted one is size-aware. The formula is checked empirically by
``candor eval identification`` (docs/fairness.md): on LFW the measured FPIR is below it, as the
table's per-pair promise is conservative there.
"""

from __future__ import annotations

import math

from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, false_match_rate

#: the false-positive identification rate an omitted search threshold is chosen to hold
TARGET_FPIR = 0.01
#: the highest Similarity whose false match rate the table calibrates (1e-5)
MAX_CALIBRATED = 99.0
#: thresholds DescribeCollection and ``candor collection describe`` report the FPIR at
COMMON_THRESHOLDS = (80.0, 85.0, 90.0, 95.0, 99.0)


def fpir(similarity: float, size: int) -> float:
    """The expected FPIR of a search at per-pair threshold ``similarity`` over ``size``
    enrolled faces (or users), for a probe of someone not enrolled."""
    if size <= 0:
        return 0.0
    f = false_match_rate(similarity)
    return float(-math.expm1(size * math.log1p(-f))) if f < 1 else 1.0


def similarity_for_fmr(fmr: float) -> float:
    """The inverse of :func:`false_match_rate`: the Similarity whose promised FMR is ``fmr``
    (50 - 10 log10 F down to 1e-4, then nine points per decade)."""
    if fmr >= 1.0:
        return 50.0
    lg = -math.log10(fmr)
    return 50.0 + 10.0 * lg if lg <= 4.0 else 90.0 + 9.0 * (lg - 4.0)


def threshold_for_size(size: int, target: float = TARGET_FPIR) -> float:
    """The per-pair Similarity at which a search over ``size`` items has FPIR ``target``
    (uncapped; rounded up to 0.01 so the FPIR at the result does not exceed ``target``)."""
    if size <= 0:
        return 0.0
    per_pair = -math.expm1(math.log1p(-target) / size)     # 1 - (1 - target)^(1/N)
    return math.ceil(similarity_for_fmr(per_pair) * 100 - 1e-9) / 100


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
        "Formula": "FPIR(S, N) = 1 - (1 - FMR(S))^N",
    }
