"""The operation table: every served operation has a complete descriptor, a handler without one
is refused, and the doors read the table (not lists of their own)."""

from __future__ import annotations

import pytest

from candor.service import OPERATIONS, _load_operations, operation
from candor.service import operations as table


def test_every_registered_operation_has_a_complete_descriptor():
    _load_operations()
    assert OPERATIONS, "no operations registered"
    for name in OPERATIONS:
        spec = table.spec(name)
        assert spec is not None, f"{name} has no descriptor"
        assert spec.problems() == [], (name, spec.problems())
        assert spec.kind in table.KINDS


def test_every_descriptor_is_complete():
    for name, spec in table.TABLE.items():
        assert spec.name == name
        assert spec.problems() == [], (name, spec.problems())


def test_a_handler_without_a_descriptor_is_refused():
    with pytest.raises(TypeError, match="no descriptor"):
        @operation("StartPersonTracking")
        def handler(service, params):  # pragma: no cover - never registered
            return {}
    assert "StartPersonTracking" not in OPERATIONS


def test_a_handler_with_an_incomplete_descriptor_is_refused():
    incomplete = table.OperationSpec("SearchLater", "identify", biometric=True, mutates=False)
    table.TABLE["SearchLater"] = incomplete  # bypassing describe(), which would refuse it
    try:
        with pytest.raises(TypeError, match="threshold member"):
            @operation("SearchLater")
            def handler(service, params):  # pragma: no cover
                return {}
    finally:
        del table.TABLE["SearchLater"]
    with pytest.raises(ValueError, match="threshold member"):
        table.describe(incomplete)


def test_similarity_operations_are_verify_or_identify():
    """Whatever returns a similarity is an identification or verification operation."""
    for name in ("CompareFaces", "AssociateFaces", "SearchFaces", "SearchFacesByImage",
                 "SearchUsers", "SearchUsersByImage"):
        assert table.TABLE[name].uses_similarity, name
        assert table.TABLE[name].threshold and table.TABLE[name].default_threshold is not None


def test_the_doors_read_the_table():
    from candor.api import protocol, s3
    from candor.governance import gate
    from candor.governance.policy import model

    for gone in ("BIOMETRIC_OPERATIONS", "_IMAGE_PARAMS", "faces_found", "matches_returned"):
        assert not hasattr(gate, gone), gone
    for gone in ("THRESHOLD_PARAMS", "RESULT_PARAMS", "default_threshold"):
        assert not hasattr(model, gone), gone
    assert not hasattr(s3, "IMAGE_MEMBERS")
    for name, spec in table.TABLE.items():
        if spec.candor:
            continue
        assert protocol.image_count(protocol.operation_model(name)) == len(spec.images), name
    # the audit record of AssociateFaces carries the similarities it returned
    resp = {"AssociatedFaces": [{"FaceId": "a"}],
            "UnsuccessfulFaceAssociations": [{"FaceId": "b", "Confidence": 52.5,
                                              "Reasons": ["LOW_MATCH_CONFIDENCE"]}]}
    assert gate.audit_fields("AssociateFaces", resp)["matches"] == [
        {"FaceId": "a", "Associated": True}, {"FaceId": "b", "Similarity": 52.5}]
    assert gate.effective_threshold("AssociateFaces", {"UserMatchThreshold": 100}) == 100.0
