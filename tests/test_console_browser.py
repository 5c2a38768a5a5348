"""The console in a real browser (issue 18): headless Chromium (Debian's package, driven by
Playwright; never a downloaded browser) signs in as a reviewer, confirms one candidate and
rejects the others, and the asking organisation's boto3 then gets exactly that match from
GetReviewResult; the reviewer is refused the access keys, an auditor cannot decide. Screenshots
go to $CANDOR_CONSOLE_SCREENSHOTS when set (docs/img is made that way)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")
pytest.importorskip("playwright")
pytest.importorskip("boto3")
from console_helper import PASSWORD, console_server, new_review  # noqa: E402
from serve_helper import SAMPLES  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    if not SAMPLES.is_dir():
        pytest.skip("test photos not found")
    with console_server(tmp_path_factory.mktemp("console-browser")) as found:
        yield found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def shot(page, name: str) -> None:
    where = os.environ.get("CANDOR_CONSOLE_SCREENSHOTS")
    if where:
        from PIL import Image

        path = Path(where) / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        with Image.open(path) as img:  # a 64-colour palette: small files for the docs
            img.convert("RGB").quantize(64).save(path, optimize=True)


def sign_in(browser, url: str, name: str, **context):
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/console")
    assert page.url.endswith("/console/login")  # no page without a session
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/console")
    return ctx, page


def test_reviewer_decides_and_boto3_gets_exactly_the_confirmed_match(server, browser):
    url, data, police = server
    review_id = new_review(police)
    ctx, page = sign_in(browser, url, "rita")
    shot(page, "console-overview")
    page.click("text=Reviews")
    page.click(f"text={review_id}")
    page.wait_for_selector("img[alt='the searched face']")
    assert page.evaluate("document.querySelector(\"img[alt='the searched face']\").naturalWidth") > 0
    shot(page, "console-review")
    cards = page.locator("ol.candidates > li")
    n = cards.count()
    assert n >= 2
    names = [cards.nth(i).locator("code").inner_text() for i in range(n)]
    page.check("input[name=verdict-0][value=confirm]")
    page.fill("input[name=reason-0]", "matches the warrant's file photo")
    for i in range(1, n):
        page.check(f"input[name=verdict-{i}][value=reject]")
        page.fill(f"input[name=reason-{i}]", "different person")
    page.click("text=Record verdicts")
    page.wait_for_selector("text=DECIDED")
    assert page.locator(".verdict-confirmed").count() == 1
    assert page.locator(".verdict-rejected").count() == n - 1
    shot(page, "console-review-decided")

    result = police.get_review_result(ReviewId=review_id)
    assert [m["Face"]["FaceId"] for m in result["FaceMatches"]] == [names[0]]

    resp = page.goto(url + "/console/keys")
    assert resp.status == 403 and "may not" in page.content()
    page.goto(url + "/console/audit?operation=DecideReview")
    assert review_id in page.content()
    shot(page, "console-audit")
    ctx.close()


def test_auditor_reads_but_cannot_decide_on_a_phone(server, browser):
    url, data, police = server
    review_id = new_review(police)
    ctx, page = sign_in(browser, url, "audrey", viewport={"width": 390, "height": 844},
                        is_mobile=True)
    page.goto(f"{url}/console/reviews/{review_id}")
    assert page.locator("input[type=radio]").count() == 0
    assert "may read this review but not decide it" in page.content()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # readable on a phone: nothing wider than the screen
    shot(page, "console-review-phone")
    page.goto(url + "/console/keys")
    assert page.locator("text=New key").count() == 0
    ctx.close()


def test_admin_pages_render(server, browser):
    url, _, _ = server
    ctx, page = sign_in(browser, url, "alice")
    for path, text in (("/console/policies", "In force"), ("/console/collections", "wanted"),
                       ("/console/keys", "New key"), ("/console/audit?verify=1", "verified"),
                       ("/console/report", "ransparency")):
        resp = page.goto(url + path)
        assert resp.status == 200 and text in page.content(), path
        shot(page, "console-" + path.split("/")[2].split("?")[0])
    page.goto(url + "/console/keys")
    page.fill("input[name=org]", "press-office")
    page.click("form[action='/console/keys/create'] button")
    page.wait_for_load_state()
    assert "AWS_SECRET_ACCESS_KEY=" in page.content()
    ctx.close()
