"""The web console without a browser (docs/console.md): the page and its assets are served by the API app
with a strict Content-Security-Policy and the other security headers, the page has no inline script or
event-handler attributes, only the console folder's own files are served, and the scripts never put API
data into the page as HTML. The browser tests are tests/browser/test_console.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve_app.routes.console import CONSOLE_DIR, CSP

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _assert_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))


def test_csp_is_the_strict_one() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CSP.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'" and "unsafe" not in CSP


@pytest.mark.parametrize("path", ["/console", "/console/"])
def test_the_page_is_served_with_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    _assert_headers(response)
    assert "<title>Orchestrator console</title>" in response.text
    assert response.headers["X-Correlation-ID"]


def test_every_asset_is_served_with_its_type_and_the_headers(client: TestClient) -> None:
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    names = sorted(path.name for path in CONSOLE_DIR.iterdir() if path.suffix in types)
    assert {"console.js", "console.css", "index.html"} <= set(names)
    for name in names:
        response = client.get(f"/console/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(types[Path(name).suffix]), name
        _assert_headers(response)
        assert response.content == (CONSOLE_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "nothing.js",
        "..%2Fapp.py",
        "..%2F..%2Fcore%2Fsettings.py",
        "%2E%2E%2Froutes%2Fconsole.py",
        "%2E%2E",
        "%2Fetc%2Fpasswd",
        "__init__.py",
        "console.js%00.css",
    ],
)
def test_unknown_names_and_paths_out_of_the_folder_are_404(client: TestClient, name: str) -> None:
    response = client.get(f"/console/assets/{name}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_dot_dot_segments_never_reach_a_file_outside(client: TestClient) -> None:
    # Clients and Starlette normalise `..` segments in the path itself; whatever route they land on, no
    # file from outside the console folder is served.
    for path in ("/console/assets/../../app.py", "/console/assets/../routes/console.py", "/console/../app.py"):
        response = client.get(path)
        assert "create_app" not in response.text and "public_router" not in response.text, path


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.handlers: list[str] = []
        self.styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [f"{tag}[{name}]" for name, _ in attrs if name.lower().startswith("on")]
        self.handlers += [f"{tag}[style]" for name, _ in attrs if name.lower() == "style"]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
        if tag == "style":
            self.styles += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def test_the_page_has_no_inline_script_handlers_or_styles(client: TestClient) -> None:
    tags = _Tags()
    tags.feed(client.get("/console").text)
    assert tags.scripts and all(script.get("src", "").startswith("/console/assets/") for script in tags.scripts)
    assert not tags.inline_script
    assert not tags.handlers
    assert tags.styles == 0
    assert "javascript:" not in client.get("/console").text.lower()


def test_the_scripts_never_write_html() -> None:
    """API data reaches the page as text: no innerHTML/outerHTML/insertAdjacentHTML/document.write, no eval."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    for script in CONSOLE_DIR.glob("*.js"):
        assert not forbidden.search(script.read_text()), script.name


def test_the_console_is_public_and_only_the_page_is_in_the_openapi_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/console" in paths and "/console/" not in paths
    assert not any(path.startswith("/console/assets") for path in paths)
    assert "text/html" in paths["/console"]["get"]["responses"]["200"]["content"]
    # The page needs no credential, and a credential is never asked for.
    response = client.get("/console", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 200
