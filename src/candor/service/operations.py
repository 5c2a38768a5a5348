"""The operation table: one descriptor per operation, the single place that says what an
operation is.

The gate reads it to decide and record a call (is it biometric? which members are images,
which is the match threshold and what is its default, what did the response return as
matches?), the policy engine to apply floors and caps and to match rules by kind, the HTTP
door to size request bodies, and the SDK model extension and the docs to list what candor
serves. A handler registered without a descriptor is refused at import, and a test checks
that every descriptor is complete.

Kinds, for policies (``match: kind: [...]``):

- ``detect``: finds and describes faces, compares nothing (DetectFaces);
- ``verify``: compares faces 1:1 and returns or uses a similarity (CompareFaces, AssociateFaces);
- ``identify``: compares a face with many (searches);
- ``enrol``: stores face data (IndexFaces);
- ``erase``: removes face data (DeleteFaces, DeleteUser, DeleteCollection, erasure, purges);
- ``manage``: collections and users without face data (create, describe, list);
- ``admin``: the operator's own acts (keys, retention, policy, evaluation).

Every operation of kind ``verify`` or ``identify`` returns or uses a similarity, so threshold
floors apply to it and a moratorium on identification covers it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from candor.scoring.similarity import (
    CELEBRITY_THRESHOLD,
    IDENTIFICATION_THRESHOLD,
    VERIFICATION_THRESHOLD,
)

KINDS = ("detect", "verify", "identify", "enrol", "erase", "manage", "admin")
#: kinds whose operations return or use a similarity
SIMILARITY_KINDS = frozenset({"verify", "identify"})

Extract = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class OperationSpec:
    """What one operation is, for everything that is not its handler."""

    name: str
    kind: str
    #: reads, creates, searches or destroys face data: always decided and recorded
    biometric: bool
    #: changes stored state (and so is refused on replay)
    mutates: bool
    #: request members that carry an image
    images: tuple[str, ...] = ()
    #: request member holding the match threshold, and candor's default for it (for the
    #: searches: the floor of the size-aware default, which the gate resolves into the request
    #: before deciding: candor.scoring.fpir, candor.service.search.size_aware_default)
    threshold: str | None = None
    default_threshold: float | None = None
    #: the call always runs at ``default_threshold``: no request member sets it, so policy
    #: floors and the ledger must never read ``threshold`` from the request
    threshold_fixed: bool = False
    #: request member bounding the number of results (or faces indexed)
    results: str | None = None
    #: request member naming the collection the call acts on (tenancy)
    collection: str | None = None
    #: how many faces the call found in its input image(s), from the response
    faces_found: Extract | None = None
    #: what the response returned as matches or scores (FaceIds, UserIds, similarities),
    #: recorded so that erasure and audits can follow a face
    matches: Extract | None = None
    #: candor's own operation, not one of Rekognition's
    candor: bool = False
    #: the response member holding candidate matches that a policy's ``human_review`` holds
    #: back for a person to confirm (candor.governance.review); None: cannot be held
    review: str | None = None

    def threshold_in(self, params: dict[str, Any]) -> Any:
        """The threshold value the call runs with: the request's member, else the default
        (always the default when ``threshold_fixed``); None when it uses no threshold."""
        if self.threshold is None:
            return None
        if self.threshold_fixed:
            return self.default_threshold
        return params.get(self.threshold, self.default_threshold)

    @property
    def uses_similarity(self) -> bool:
        return self.kind in SIMILARITY_KINDS

    def problems(self) -> list[str]:
        """Why this descriptor is incomplete (empty when it is complete)."""
        out = []
        if self.kind not in KINDS:
            out.append(f"kind {self.kind!r} is not one of {KINDS}")
        if self.uses_similarity and (self.threshold is None or self.default_threshold is None):
            out.append("an operation that uses a similarity must name its threshold member "
                       "and default")
        if self.uses_similarity and self.matches is None:
            out.append("an operation that uses a similarity must say what it returns as matches")
        if self.images and self.faces_found is None:
            out.append("an operation that takes images must say how many faces it found")
        return out


# -- what responses return ------------------------------------------------------------------
def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _face_matches(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"FaceId": (m.get("Face") or {}).get("FaceId"), "Similarity": m.get("Similarity")}
            for m in resp.get("FaceMatches") or []]


def user_digest(user_id: Any) -> str | None:
    """How the ledger names a user: the SHA-256 of the UserId, never the UserId, which the
    client chose and may be a name; the ledger cannot be changed, and must not keep what an
    erasure removes (docs/policies.md)."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest() if isinstance(user_id, str) else None


def _user_matches(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"UserIdSha256": user_digest((m.get("User") or {}).get("UserId")),
             "Similarity": m.get("Similarity")} for m in resp.get("UserMatches") or []]


def _compare_matches(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Similarity": m.get("Similarity")} for m in resp.get("FaceMatches") or []]


def _indexed(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"FaceId": (r.get("Face") or {}).get("FaceId"), "Indexed": True}
            for r in resp.get("FaceRecords") or []]


def _associated(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """AssociateFaces compares each face with the user: what it associated, and the scores
    it returned for the faces it refused."""
    out: list[dict[str, Any]] = [{"FaceId": a.get("FaceId"), "Associated": True}
                                 for a in resp.get("AssociatedFaces") or []]
    out += [{"FaceId": f.get("FaceId"), "Similarity": f.get("Confidence")}
            for f in resp.get("UnsuccessfulFaceAssociations") or []
            if f.get("Confidence") is not None]
    return out


def _released(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """GetReviewResult: the confirmed matches it released."""
    out = [{**m, "Released": True} for m in _face_matches(resp) + _user_matches(resp)]
    out += [{"Similarity": m.get("Similarity"), "Released": True}
            for m in resp.get("CompareMatches") or []]
    return out


def _detected(resp: dict[str, Any]) -> int:
    return _length(resp.get("FaceDetails"))


def _index_found(resp: dict[str, Any]) -> int:
    return _length(resp.get("FaceRecords")) + _length(resp.get("UnindexedFaces"))


def _compare_found(resp: dict[str, Any]) -> int:
    return ((1 if resp.get("SourceImageFace") else 0) + _length(resp.get("FaceMatches"))
            + _length(resp.get("UnmatchedFaces")))


def _search_found(resp: dict[str, Any]) -> int:
    return 1 if resp.get("SearchedFaceBoundingBox") else 0


def _search_users_found(resp: dict[str, Any]) -> int:
    return (1 if resp.get("SearchedFace") else 0) + _length(resp.get("UnsearchedFaces"))


def _in_image_found(resp: dict[str, Any]) -> int:
    return _length(resp.get("SearchedFaces")) + _length(resp.get("UnsearchedFaces"))


def _in_image_matches(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """Every face's matches, with the index of the face (largest first) they belong to."""
    out: list[dict[str, Any]] = []
    for i, face in enumerate(resp.get("SearchedFaces") or []):
        for m in _face_matches(face) + _user_matches(face):
            out.append({"SearchedFace": i, **m})
    return out


def _celebrity_found(resp: dict[str, Any]) -> int:
    return _length(resp.get("CelebrityFaces")) + _length(resp.get("UnrecognizedFaces"))


def _celebrity_matches(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"CelebrityId": c.get("Id"), "Similarity": c.get("MatchConfidence")}
            for c in resp.get("CelebrityFaces") or []]


def _job_started(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """A Start* operation returns only its JobId; the job's faces and matches are recorded
    when it completes (candor.governance.video)."""
    return [{"JobId": resp.get("JobId")}] if resp.get("JobId") else []


def _celebrities_returned(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """GetCelebrityRecognition: the people it named, each once with their best Confidence."""
    best: dict[str, float] = {}
    for c in resp.get("Celebrities") or []:
        celebrity = c.get("Celebrity") or {}
        if celebrity.get("Id"):
            best[celebrity["Id"]] = max(best.get(celebrity["Id"], 0.0),
                                        float(celebrity.get("Confidence") or 0.0))
    return [{"CelebrityId": k, "Similarity": v} for k, v in sorted(best.items())]


def _persons_returned(resp: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"FaceId": (m.get("Face") or {}).get("FaceId"), "Similarity": m.get("Similarity"),
             "Index": (p.get("Person") or {}).get("Index")}
            for p in resp.get("Persons") or [] for m in p.get("FaceMatches") or []]


# -- the table --------------------------------------------------------------------------------
_C = "CollectionId"
TABLE: dict[str, OperationSpec] = {spec.name: spec for spec in (
    OperationSpec("DetectFaces", "detect", biometric=True, mutates=False, images=("Image",),
                  faces_found=_detected),
    OperationSpec("CompareFaces", "verify", biometric=True, mutates=False,
                  images=("SourceImage", "TargetImage"), threshold="SimilarityThreshold",
                  default_threshold=VERIFICATION_THRESHOLD, faces_found=_compare_found,
                  matches=_compare_matches, review="FaceMatches"),
    OperationSpec("CreateCollection", "manage", biometric=False, mutates=True, collection=_C),
    OperationSpec("DescribeCollection", "manage", biometric=False, mutates=False, collection=_C),
    OperationSpec("ListCollections", "manage", biometric=False, mutates=False,
                  results="MaxResults"),
    OperationSpec("DeleteCollection", "erase", biometric=True, mutates=True, collection=_C),
    OperationSpec("IndexFaces", "enrol", biometric=True, mutates=True, images=("Image",),
                  results="MaxFaces", collection=_C, faces_found=_index_found,
                  matches=_indexed),
    OperationSpec("ListFaces", "manage", biometric=True, mutates=False, results="MaxResults",
                  collection=_C),
    OperationSpec("DeleteFaces", "erase", biometric=True, mutates=True, collection=_C),
    OperationSpec("SearchFaces", "identify", biometric=True, mutates=False,
                  threshold="FaceMatchThreshold", default_threshold=IDENTIFICATION_THRESHOLD,
                  results="MaxFaces", collection=_C, matches=_face_matches,
                  review="FaceMatches"),
    OperationSpec("SearchFacesByImage", "identify", biometric=True, mutates=False,
                  images=("Image",), threshold="FaceMatchThreshold",
                  default_threshold=IDENTIFICATION_THRESHOLD, results="MaxFaces", collection=_C,
                  faces_found=_search_found, matches=_face_matches, review="FaceMatches"),
    OperationSpec("CreateUser", "manage", biometric=False, mutates=True, collection=_C),
    OperationSpec("DeleteUser", "erase", biometric=True, mutates=True, collection=_C),
    OperationSpec("ListUsers", "manage", biometric=False, mutates=False, results="MaxResults",
                  collection=_C),
    OperationSpec("AssociateFaces", "verify", biometric=True, mutates=True,
                  threshold="UserMatchThreshold", default_threshold=75.0, collection=_C,
                  matches=_associated),
    OperationSpec("DisassociateFaces", "manage", biometric=True, mutates=True, collection=_C),
    OperationSpec("SearchUsers", "identify", biometric=True, mutates=False,
                  threshold="UserMatchThreshold", default_threshold=IDENTIFICATION_THRESHOLD,
                  results="MaxUsers", collection=_C, matches=_user_matches,
                  review="UserMatches"),
    OperationSpec("SearchUsersByImage", "identify", biometric=True, mutates=False,
                  images=("Image",), threshold="UserMatchThreshold",
                  default_threshold=IDENTIFICATION_THRESHOLD, results="MaxUsers", collection=_C,
                  faces_found=_search_users_found, matches=_user_matches,
                  review="UserMatches"),
    # candor's own operations: decided by the policy and recorded like the others
    # (candor.governance.gate.Gate.run_candor); a rule such as
    # ``match: {operation: CreateAccessKey}`` can deny them
    OperationSpec("CreateAccessKey", "admin", biometric=False, mutates=True, candor=True),
    OperationSpec("RevokeAccessKey", "admin", biometric=False, mutates=True, candor=True),
    OperationSpec("Erase", "erase", biometric=True, mutates=True, collection=_C, candor=True),
    OperationSpec("SetRetention", "admin", biometric=False, mutates=True, collection=_C,
                  candor=True),
    OperationSpec("Purge", "erase", biometric=True, mutates=True, candor=True),
    OperationSpec("ReloadPolicy", "admin", biometric=False, mutates=True, candor=True),
    # the operator's celebrity gallery (candor celebrities import|remove)
    OperationSpec("ImportCelebrities", "enrol", biometric=True, mutates=True, candor=True),
    OperationSpec("RemoveCelebrity", "erase", biometric=True, mutates=True, candor=True),
    # identification of several people at once: every rule of SearchFacesByImage applies
    OperationSpec("SearchFacesInImage", "identify", biometric=True, mutates=False,
                  images=("Image",), threshold="FaceMatchThreshold",
                  default_threshold=IDENTIFICATION_THRESHOLD, results="MaxMatchesPerFace",
                  collection=_C, faces_found=_in_image_found, matches=_in_image_matches,
                  candor=True),
    # Rekognition's request has no threshold member: candor applies the gallery's measured
    # threshold (service.celebrities.gallery_threshold, never below the default here);
    # "MatchConfidence" names what it bounds. It is NOT a request member: a floor must be
    # compared with the default, never with a value read from the request
    OperationSpec("RecognizeCelebrities", "identify", biometric=True, mutates=False,
                  images=("Image",), threshold="MatchConfidence",
                  default_threshold=CELEBRITY_THRESHOLD, threshold_fixed=True,
                  faces_found=_celebrity_found,
                  matches=_celebrity_matches),
    OperationSpec("GetCelebrityInfo", "manage", biometric=False, mutates=False),
    # stored video: Start* is decided like its image counterpart; Get* reads results and is
    # answered only to the organisation that started the job
    OperationSpec("StartFaceDetection", "detect", biometric=True, mutates=True),
    OperationSpec("GetFaceDetection", "detect", biometric=True, mutates=False,
                  results="MaxResults"),
    OperationSpec("StartFaceSearch", "identify", biometric=True, mutates=True,
                  threshold="FaceMatchThreshold", default_threshold=IDENTIFICATION_THRESHOLD,
                  collection=_C, matches=_job_started),
    OperationSpec("GetFaceSearch", "manage", biometric=True, mutates=False,
                  results="MaxResults", matches=_persons_returned),
    # celebrity recognition in stored video: decided like RecognizeCelebrities (the gallery's
    # measured threshold, never read from the request); the job's names are recorded when it
    # finishes (candor.governance.video)
    OperationSpec("StartCelebrityRecognition", "identify", biometric=True, mutates=True,
                  threshold="MatchConfidence", default_threshold=CELEBRITY_THRESHOLD,
                  threshold_fixed=True, matches=_job_started),
    OperationSpec("GetCelebrityRecognition", "manage", biometric=True, mutates=False,
                  results="MaxResults", matches=_celebrities_returned),
    # human review (candor.governance.review): a reviewer's verdicts, and the release of the
    # confirmed matches to the organisation whose call was held (served over HTTP too)
    OperationSpec("DecideReview", "admin", biometric=True, mutates=True, candor=True),
    OperationSpec("GetReviewResult", "manage", biometric=True, mutates=False, candor=True,
                  matches=_released),
    # the console's sign-ins and policy activations (candor.api.console): recorded, and a
    # policy can refuse them
    OperationSpec("ConsoleSignIn", "admin", biometric=False, mutates=True, candor=True),
    OperationSpec("ActivatePolicy", "admin", biometric=False, mutates=True, candor=True),
    # a collection that keeps a small face thumbnail per indexed face, for reviewers
    OperationSpec("KeepThumbnails", "admin", biometric=True, mutates=True, collection=_C,
                  candor=True),
)}


def spec(name: str) -> OperationSpec | None:
    """The descriptor of operation ``name``, or None when candor does not know it."""
    return TABLE.get(name)


def describe(spec_: OperationSpec) -> None:
    """Add ``spec_`` to the table (for operations defined outside this module); an
    incomplete descriptor is refused."""
    problems = spec_.problems()
    if problems:
        raise ValueError(f"operation {spec_.name}: " + "; ".join(problems))
    TABLE[spec_.name] = spec_
