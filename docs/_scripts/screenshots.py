"""Take the README's screenshots of the built site (build/site/, from ``nox -s docs``).

    python docs/_scripts/screenshots.py     # writes docs/img/api_make_index.png, docs/img/notebook_tour.png

Serves the site on loopback and captures a cropped viewport in headless Chromium (Debian's
``/usr/bin/chromium`` driven by playwright; no browser download).
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "build" / "site"
OUT = REPO / "docs" / "img"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = [
    # file, page, element scrolled to the top of the viewport
    ("api_make_index.png", "api/mlsys.common.ann/", "[id='mlsys.common.ann.make_index']"),
    ("notebook_tour.png", "notebooks/00_tour/", "h2:has-text('Ranking metrics')"),
]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    """Serve ``build/site`` and write the PNGs; exit status 1 when the site is not built."""
    from playwright.sync_api import sync_playwright

    if not (SITE / "index.html").is_file():
        print(f"no site at {SITE}: run nox -s docs first", file=sys.stderr)
        return 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            for name, path, anchor in SHOTS:
                page.goto(base + path, wait_until="load")
                page.locator(anchor).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.evaluate("window.scrollBy(0, -70)")  # below the sticky header
                page.add_style_tag(content=".md-top { display: none !important; }")  # "back to top"
                page.wait_for_timeout(300)
                page.screenshot(path=str(OUT / name))
                print(f"{OUT / name}: {(OUT / name).stat().st_size / 1e3:.0f} kB")
            browser.close()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
