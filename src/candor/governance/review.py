"""Human review, enforced: a call whose deciding rule requires ``human_review`` runs, but its
candidate matches go to a review instead of the caller.

The gate calls :func:`hold` on the response of such a call: the matches (the response member
its descriptor names, :attr:`OperationSpec.review`) are stored with the probe's face crop, who
asked, when and under which authorisation, and the caller gets the response with no matches
and a ``ReviewId``. A reviewer confirms or rejects each candidate with a reason
(:func:`decide`, the candor operation ``DecideReview``, recorded in the ledger); the asking
organisation then reads only the confirmed ones with ``GetReviewResult``
(:mod:`candor.service.reviews`). A review nobody decides expires after the rule's
``review_expires_hours`` (default :data:`DEFAULT_EXPIRES_HOURS`) and releases nothing. The
probe crop is removed when the review is decided or expires.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from candor.errors import InvalidParameter, ResourceNotFound
from candor.face.imaging import crop_jpeg
from candor.service import operations
from candor.store.reviews import CONFIRMED, DECIDED, PENDING, REJECTED

#: hours a held call waits for a reviewer when the rule does not say
DEFAULT_EXPIRES_HOURS = 72.0
#: the probe crop's longest side, in pixels (small: enough to compare, not a photo)
CROP_PIXELS = 160
#: a reason is required with every verdict, and kept short
MAX_REASON = 2000
VERDICTS = {"confirm": CONFIRMED, "reject": REJECTED, CONFIRMED: CONFIRMED, REJECTED: REJECTED}
#: the response header that carries the review id over HTTP
REVIEW_HEADER = "X-Candor-Review-Id"


def reviewable(operation: str) -> str | None:
    """The response member a review holds back for ``operation`` (None: it cannot be held)."""
    descriptor = operations.spec(operation)
    return descriptor.review if descriptor is not None else None


def candidate_key(member: str, match: dict[str, Any], position: int) -> str:
    """How a reviewer names a candidate: its FaceId or UserId, else ``match-N``."""
    if member == "FaceMatches" and isinstance(match.get("Face"), dict) and match["Face"].get(
            "FaceId"):
        return str(match["Face"]["FaceId"])
    if member == "UserMatches" and isinstance(match.get("User"), dict):
        return str(match["User"].get("UserId"))
    return f"match-{position + 1}"


def _named(member: str, candidate: str) -> dict[str, Any]:
    """A candidate as the ledger names it: a user by the SHA-256 of its UserId
    (:func:`candor.service.operations.user_digest`), anything else as itself."""
    if member == "UserMatches":
        return {"UserIdSha256": operations.user_digest(candidate)}
    return {"Candidate": candidate}


def hold(store: Any, operation: str, params: dict[str, Any], resp: dict[str, Any], *,
         principal: Any, request_id: str, rule: str, authorization_reference: str | None,
         threshold: float | None, constraints: dict[str, Any],
         at: datetime) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """Store ``resp``'s candidate matches as a review; return the response the caller gets
    (no matches, a ``ReviewId``), the review id and the held candidates (for the ledger)."""
    member = reviewable(operation)
    if member is None:
        raise ValueError(f"{operation} cannot be held for review")
    store.expire_reviews(at)  # also whenever reviews are read: no timer needed
    review_id = "rv-" + uuid.uuid4().hex
    matches = [m for m in resp.get(member) or [] if isinstance(m, dict)]
    candidates = [{"candidate": candidate_key(member, m, i), "similarity": m.get("Similarity"),
                   "match": m} for i, m in enumerate(matches)]
    hours = float(constraints.get("review_expires_hours") or DEFAULT_EXPIRES_HOURS)
    collection = params.get("CollectionId")
    store.create_review({
        "review_id": review_id, "org": principal.org, "principal": principal.name,
        "category": principal.category, "operation": operation,
        "collection_id": collection if isinstance(collection, str) else None,
        "request_id": request_id, "rule": rule,
        "authorization_reference": authorization_reference, "threshold": threshold,
        "member": "CompareMatches" if operation == "CompareFaces" else member,
        "created_at": at, "expires_at": at + timedelta(hours=hours),
        "probe_jpeg": probe_crop(operation, params, resp) or _stored_probe(store, params)},
        candidates)
    held = {**resp, member: [], "ReviewId": review_id}
    summary = [{**_named(member, c["candidate"]), "Similarity": c["similarity"], "Held": True}
               for c in candidates]
    return held, review_id, summary


def probe_crop(operation: str, params: dict[str, Any], resp: dict[str, Any]) -> bytes | None:
    """The searched face cut from the input image as a small JPEG (None when the call took
    no image, e.g. SearchFaces by FaceId, or the box is missing)."""
    if operation == "SearchFacesByImage":
        image, box = params.get("Image"), resp.get("SearchedFaceBoundingBox")
    elif operation == "SearchUsersByImage":
        image = params.get("Image")
        box = ((resp.get("SearchedFace") or {}).get("FaceDetail") or {}).get("BoundingBox")
    elif operation == "CompareFaces":
        image, box = params.get("SourceImage"), (resp.get("SourceImageFace") or {}).get(
            "BoundingBox")
    else:
        return None
    try:
        return crop_jpeg(_pixels(image), box)
    except Exception:  # a crop is a convenience for the reviewer; the review stands without
        return None


def _stored_probe(store: Any, params: dict[str, Any]) -> bytes | None:
    """SearchFaces / SearchUsers by FaceId: that face's thumbnail, if its collection keeps
    them (a copy, kept with the review like any probe crop)."""
    face_id = params.get("FaceId")
    try:
        return store.thumbnail(face_id) if isinstance(face_id, str) else None
    except Exception:
        return None


def _pixels(image: Any):
    from candor.face.imaging import Image, load_image

    data = image.get("Bytes") if isinstance(image, dict) else None
    if isinstance(data, Image):
        return data.pixels
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    return load_image(bytes(data)).pixels


def parse_verdicts(review: dict[str, Any], verdicts: dict[str, tuple[str, str]]
                   ) -> dict[str, tuple[str, str]]:
    """Check a reviewer's verdicts against ``review``: every candidate decided, each with a
    known verdict and a reason. Returns them normalised (CONFIRMED / REJECTED)."""
    known = [c["candidate"] for c in review["candidates"]]
    out: dict[str, tuple[str, str]] = {}
    for candidate, (verdict, reason) in verdicts.items():
        if candidate not in known:
            raise InvalidParameter(f"review {review['review_id']} has no candidate {candidate!r}")
        norm = VERDICTS.get(verdict if verdict in (CONFIRMED, REJECTED) else str(verdict).lower())
        if norm is None:
            raise InvalidParameter(f"verdict for {candidate} must be confirm or reject")
        reason = (reason or "").strip()
        if not reason:
            raise InvalidParameter(f"a reason is required for the verdict on {candidate}")
        out[candidate] = (norm, reason[:MAX_REASON])
    missing = [c for c in known if c not in out]
    if missing:
        raise InvalidParameter("every candidate needs a verdict; undecided: " + ", ".join(missing))
    return out


def decide(gate: Any, store: Any, principal: Any, review_id: str,
           verdicts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A reviewer's verdicts on review ``review_id``: the candor operation DecideReview,
    decided by the policy and recorded in the ledger (who, when, each verdict and reason);
    the probe crop goes with the decision. Returns the decided review."""
    store.expire_reviews(gate.clock())
    review = store.review(review_id)
    if review is None:
        raise ResourceNotFound(f"no review {review_id!r}")
    if review["status"] != PENDING:
        raise InvalidParameter(f"review {review_id} is {review['status'].lower()}, not pending")
    checked = parse_verdicts(review, verdicts)
    # recorded: a user candidate by its UserId's SHA-256 (_named), as everywhere in the ledger
    decisions = [{"candidate": next(iter(_named(review["member"], c).values())), "verdict": v,
                  "reason": r} for c, (v, r) in checked.items()]
    params = {"ReviewId": review_id, "Org": review["org"],
              "Decisions": json.dumps(decisions, sort_keys=True)}

    def action() -> dict[str, Any]:
        if not store.decide_review(review_id, checked, principal.name, gate.clock()):
            raise InvalidParameter(f"review {review_id} was decided or expired meanwhile")
        return store.review(review_id)

    return gate.run_candor(principal, "DecideReview", params, action)


def released(review: dict[str, Any]) -> dict[str, Any]:
    """GetReviewResult's response for ``review``: its status, and the confirmed matches once
    it is decided (never a rejected or undecided one)."""
    out: dict[str, Any] = {"ReviewId": review["review_id"], "Status": review["status"],
                           "Operation": review["operation"], "CreatedAt": review["created_at"],
                           "ExpiresAt": review["expires_at"]}
    if review.get("collection_id"):
        out["CollectionId"] = review["collection_id"]
    if review["status"] == DECIDED:
        cands = review["candidates"]
        out["DecidedAt"] = review["decided_at"]
        out[review["member"]] = [c["match"] for c in cands if c["verdict"] == CONFIRMED]
        out["RejectedCount"] = sum(1 for c in cands if c["verdict"] == REJECTED)
        out["CandidateCount"] = len(cands)
    return out


def cannot_hold(decision: Any, operation: str) -> Any:
    """The refusal of a call that a rule sends to human review but whose result cannot be
    held back (AssociateFaces acts as it compares): review must not become advice."""
    from candor.governance.policy import DENY, Decision

    return Decision(DENY, decision.rule, f"{operation} requires human review under this rule, "
                    "and its result cannot be held for a reviewer", decision.constraints)
