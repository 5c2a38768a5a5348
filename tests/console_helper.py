"""Shared by the console tests: a `candor serve` under eu-ai-act with console accounts and a
held law-enforcement search, and a small cookie-keeping HTTP client (no redirects followed)."""

from __future__ import annotations

import http.client
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from review_helper import ORG, extended_client, held_search, populate
from serve_helper import CANDOR, serve

PASSWORD = "correct horse battery staple"
ACCOUNTS = {"alice": "admin", "rita": "reviewer", "audrey": "auditor"}


def add_account(data: Path, name: str, role: str, password: str = PASSWORD) -> None:
    done = subprocess.run([*CANDOR, "operators", "add", name, "--role", role,
                           "--password-stdin", "--data-dir", str(data)],
                          input=password + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@contextmanager
def console_server(tmp: Path):
    data = tmp / "data"
    with serve(data, tmp, "--policy", "eu-ai-act") as url:
        for name, role in ACCOUNTS.items():
            add_account(data, name, role)
        key_id, police = extended_client(url, data, ORG, "law_enforcement")
        populate(police)
        yield url, data, police


def new_review(police) -> str:
    return held_search(police)["ReviewId"]


class Browserless:
    """Cookies kept per client, like one browser; every response returned as is."""

    def __init__(self, url: str) -> None:
        self.netloc = urlsplit(url).netloc
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.netloc, timeout=120)
        body = urlencode(form).encode() if form is not None else None
        hdrs = {**(headers or {})}
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        for value in resp.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";")[0]
            if val in ('""', "") or "max-age=0" in value.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        conn.close()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        headers["set-cookie"] = " || ".join(resp.headers.get_all("set-cookie") or [])
        return resp.status, headers, text

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form)

    def sign_in(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        _, _, page = self.get("/console/login")
        status, _, text = self.post("/console/login", {"csrf": csrf_of(page), "name": name,
                                                       "password": password})
        return status, text

    def csrf(self, path: str = "/console") -> str:
        return csrf_of(self.get(path)[2])


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)
