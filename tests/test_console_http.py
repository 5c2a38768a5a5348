"""The console at the HTTP level (issue 18): no page without a session, every state-changing
form refuses a missing or wrong CSRF token, a sign-in never keeps the session id the browser
came with, repeated failed sign-ins lock the account, roles limit what an account can do, and
sign-ins and refusals are in the ledger. Against a real `candor serve`."""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")
from console_helper import PASSWORD, Browserless, add_account, console_server, new_review  # noqa: E402
from postgres_helper import db_rows
from serve_helper import SAMPLES  # noqa: E402

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="test photos not found")


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    with console_server(tmp_path_factory.mktemp("console-http")) as (url, data, police):
        yield url, data, police, new_review(police)


def pages(review_id: str) -> list[str]:
    return ["/console", "/console/reviews", "/console/reviews?status=decided",
            f"/console/reviews/{review_id}", f"/console/reviews/{review_id}/probe.jpg",
            "/console/audit", "/console/audit?verify=1", "/console/report", "/console/policies",
            "/console/collections", "/console/keys", "/console/faces/x/thumb.jpg"]


def forms(review_id: str) -> dict[str, dict]:
    """Every state-changing form, with otherwise valid fields."""
    return {
        f"/console/reviews/{review_id}": {"verdict-0": "confirm", "reason-0": "x"},
        "/console/policies/check": {"draft": "version: 1\n"},
        "/console/policies/activate": {"draft": "version: 1\nname: x\ndefault: allow\n"},
        "/console/collections/retention": {"collection": "wanted", "days": "3"},
        "/console/collections/erase": {"external_image_id": "p0"},
        "/console/keys/create": {"org": "x", "category": "general"},
        "/console/keys/revoke": {"key": "AKNONE"},
        "/console/logout": {},
    }


def ledger(data, where: str) -> list[tuple]:
    return db_rows(data, f"SELECT principal, operation, decision, rule, details FROM "
                         f"audit_records WHERE {where} ORDER BY seq")


def test_no_page_without_a_session(server):
    url, _, _, review_id = server
    anon = Browserless(url)
    for path in pages(review_id):
        status, headers, _ = anon.get(path)
        assert (status, headers.get("location")) == (303, "/console/login"), path
    for path, form in forms(review_id).items():
        status, _, _ = anon.post(path, {**form, "csrf": "anything"})
        assert status == 403, path
    stolen = Browserless(url)
    stolen.cookies["candor_session"] = "made-up-token"
    assert stolen.get("/console")[0] == 303


def test_every_form_refuses_a_missing_or_wrong_csrf_token(server):
    url, data, police, review_id = server
    admin = Browserless(url)
    assert admin.sign_in("alice")[0] == 303
    keys_before = len(ledger(data, "operation = 'CreateAccessKey'"))
    for path, form in forms(review_id).items():
        assert admin.post(path, form)[0] == 403, path  # missing
        assert admin.post(path, {**form, "csrf": "wrong"})[0] == 403, path
        other = Browserless(url)  # another account's valid token is wrong here too
        other.sign_in("rita")
        assert admin.post(path, {**form, "csrf": other.csrf()})[0] == 403, path
    assert admin.get("/console")[0] == 200  # logout without a token did not sign out
    assert len(ledger(data, "operation = 'CreateAccessKey'")) == keys_before
    assert police.get_review_result(ReviewId=review_id)["Status"] == "PENDING"
    # the sign-in form too (double-submitted token)
    anon = Browserless(url)
    anon.get("/console/login")
    status, _, _ = anon.post("/console/login", {"name": "alice", "password": PASSWORD})
    assert status == 403 and "candor_session" not in anon.cookies
    status, _, _ = anon.post("/console/login", {"csrf": "wrong", "name": "alice",
                                                "password": PASSWORD})
    assert status == 403 and "candor_session" not in anon.cookies
    # a valid token is accepted (the check is not refusing everything)
    status, _, page = admin.post("/console/policies/check", {"draft": "version: 1\n",
                                                              "csrf": admin.csrf()})
    assert status == 200 and "Problems" in page


def test_sign_in_makes_a_new_session_id(server):
    url, _, _, _ = server
    b = Browserless(url)
    b.cookies["candor_session"] = "planted-by-an-attacker"
    assert b.sign_in("rita")[0] == 303
    first = b.cookies["candor_session"]
    assert first != "planted-by-an-attacker"
    assert b.sign_in("rita")[0] == 303
    second = b.cookies["candor_session"]
    assert second != first
    old = Browserless(url)
    old.cookies["candor_session"] = first
    assert old.get("/console")[0] == 303  # the session the browser came with ended
    assert b.get("/console")[0] == 200


def test_cookies_are_httponly_and_strict(server):
    url, _, _, _ = server
    b = Browserless(url)
    _, _, page = b.get("/console/login")
    conn_status, headers, _ = b.post("/console/login", {
        "csrf": page.split('name="csrf" value="')[1].split('"')[0], "name": "rita",
        "password": PASSWORD})
    cookie = [c for c in headers["set-cookie"].lower().split(" || ")
              if c.startswith("candor_session=")][0]
    assert conn_status == 303 and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/console" in cookie
    _, headers, _ = b.request("GET", "/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in headers["set-cookie"].lower()


def test_repeated_failed_sign_ins_lock_the_account(server):
    url, data, _, _ = server
    add_account(data, "mallory", "auditor")
    b = Browserless(url)
    for _ in range(5):
        status, page = b.sign_in("mallory", "not the password")
        assert status == 401 and "Wrong name or password" in page
    status, page = b.sign_in("mallory")  # the right password, too late
    assert status == 401 and "locked" in page and "candor_session" not in b.cookies
    rows = ledger(data, "operation = 'ConsoleSignIn' AND principal = 'console:mallory'")
    assert [r[2] for r in rows] == ["failed"] * 6
    assert '"locked"' in rows[-1][4]
    assert ledger(data, "operation = 'ConsoleSignIn' AND principal = 'console:alice' "
                        "AND decision = 'allow'")


def test_roles_limit_what_an_account_can_do(server):
    url, data, police, _ = server
    review_id = new_review(police)
    reviewer, auditor = Browserless(url), Browserless(url)
    reviewer.sign_in("rita")
    auditor.sign_in("audrey")
    assert reviewer.get("/console/keys")[0] == 403
    status, _, page = auditor.get("/console/keys")
    assert status == 200 and "New key" not in page  # reads, cannot change
    assert auditor.post("/console/keys/create", {"org": "x", "category": "general",
                                                 "csrf": auditor.csrf()})[0] == 403
    assert reviewer.post("/console/keys/create", {"org": "x", "category": "general",
                                                  "csrf": reviewer.csrf()})[0] == 403
    status, _, page = auditor.get(f"/console/reviews/{review_id}")
    assert status == 200 and 'type="radio"' not in page
    assert auditor.post(f"/console/reviews/{review_id}", {
        "verdict-0": "confirm", "reason-0": "x", "csrf": auditor.csrf()})[0] == 403
    assert reviewer.post("/console/collections/erase", {
        "external_image_id": "p0", "csrf": reviewer.csrf()})[0] == 403
    assert police.get_review_result(ReviewId=review_id)["Status"] == "PENDING"
    refused = ledger(data, "rule = 'console-role'")
    assert {(r[0], r[1]) for r in refused} >= {("console:audrey", "CreateAccessKey"),
                                               ("console:rita", "CreateAccessKey"),
                                               ("console:audrey", "DecideReview"),
                                               ("console:rita", "Erase")}


def test_hostile_input_gets_a_refusal_not_a_traceback(server):
    url, _, _, _ = server
    admin = Browserless(url)
    admin.sign_in("alice")
    status, _, page = admin.get("/console/reviews/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert status == 404 and "<img src=x" not in page and "&lt;img" in page
    status, _, _ = admin.request("POST", "/console/keys/create",
                                 headers={"Content-Type": "application/json"})
    assert status == 403
    big = {"csrf": admin.csrf(), "draft": "x" * 400_000}
    assert admin.post("/console/policies/check", big)[0] == 403
    for path in ("/console/audit?since=%00%FF&face_id=%25", "/console/report?from=yesterday",
                 "/console/reviews?status=%27;drop"):
        status, _, page = admin.get(path)
        assert status in (200, 400) and "Traceback" not in page, path
