"""GetReviewResult: the confirmed matches of a call a policy held for human review.

Only the organisation whose call was held may read a review (any other caller, the operator
included, gets ResourceNotFound, as for another organisation's collection); the operator's
reviewers see reviews in the console and with ``candor review``. See
:mod:`candor.governance.review` for the flow and docs/policies.md ("Human review").
"""

from __future__ import annotations

from candor.clock import utcnow
from candor.errors import ResourceNotFound
from candor.governance.review import released
from candor.service import Service, operation
from candor.service.caller import current_caller
from candor.service.common import store_of


@operation("GetReviewResult")
def get_review_result(service: Service, params: dict) -> dict:
    store = store_of(service)
    store.expire_reviews(utcnow())
    review = store.review(params["ReviewId"])
    if review is None or review["org"] != current_caller().org:
        raise ResourceNotFound(f"Review {params['ReviewId']} not found")
    return released(review)
