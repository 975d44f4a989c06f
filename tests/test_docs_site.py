"""The documentation site in a real browser: home page and one API page per package render.

Uses the site of ``nox -s docs`` in build/site/ when it exists, else builds one into a temporary
folder with ``mkdocs build`` (not strict: the tutorials may not be executed there; ``nox -s docs``
is the strict build). Serves it on loopback with ``http.server`` in a thread and opens pages in
headless Chromium (Debian's ``/usr/bin/chromium``, driven by the ``playwright`` package; no browser
download): each page must have its title and the signature of a known public function, and log
no console error. Skipped, with the command that installs what is missing, without mkdocs,
playwright or Chromium.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MLSYS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# page, text of its title, a signature that must be rendered on it
PAGES = [
    ("", "mlsys", "nox -s docs"),
    (
        "api/mlsys.common.ann/",
        "mlsys.common.ann",
        "make_index(kind: str, space: EmbeddingSpace, **params: Any) -> Any",
    ),
    ("api/mlsys.recsys/", "mlsys.recsys", "evaluate_recommender("),
    ("api/mlsys.rag/", "mlsys.rag", "evaluate_retriever("),
    ("api/mlsys.vision/", "mlsys.vision", "export_onnx("),
]

pytest.importorskip(
    "mkdocs", reason="mkdocs is not installed: pip install -c constraints.txt -r requirements/docs.txt"
)
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install -c constraints.txt -r requirements/docs.txt",
)
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set MLSYS_CHROMIUM)",
        allow_module_level=True,
    )


def _flat(text: str) -> str:
    """Whitespace-insensitive text: the site wraps long signatures over several lines."""
    return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", " ".join(text.split())))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = REPO / "build" / "site"
    if (built / "index.html").is_file() and (built / "api" / "mlsys.common.ann" / "index.html").is_file():
        return built
    out = tmp_path_factory.mktemp("site")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    proc = subprocess.run(
        [mkdocs, "build", "--no-strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize(("path", "title", "signature"), PAGES, ids=[p[0] or "home" for p in PAGES])
def test_page_renders_without_console_errors(
    browser: object, base_url: str, path: str, title: str, signature: str
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(base_url + path, wait_until="load")
    assert response is not None and response.status == 200
    page.wait_for_timeout(300)  # let the theme's scripts run
    assert title in page.title(), page.title()
    text = _flat(page.inner_text("article"))
    assert _flat(signature) in text, f"{signature!r} not rendered on {path or 'home'}"
    assert errors == [], errors
    page.close()


def test_api_page_links_resolve(browser: object, base_url: str) -> None:
    """The make_index heading is an anchor of the ann page, as the README screenshot shows it."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base_url + "api/mlsys.common.ann/#mlsys.common.ann.make_index", wait_until="load")
    assert page.locator("[id='mlsys.common.ann.make_index']").count() == 1
    page.close()
