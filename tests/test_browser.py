"""report.html (and report.md rendered as GitHub would) in a real browser: headless Chromium.

The plots must render (SVG elements in the DOM, plot colours on the screenshot), and a corpus
record holding `<script>` or a Markdown image pointing at a live local server must neither run
nor load. Skips cleanly without Chromium (Debian: `apt-get install -y chromium`)."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from instructflow import report

from test_report import PARAMS, make_reports  # noqa: E402  (tests/ is on sys.path)

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium not installed "
                                                        "(Debian: apt-get install -y chromium)")
PLOT_BLUE = (0x44, 0x77, 0xAA)  # the first series colour of report/plots.py


class Beacon(http.server.BaseHTTPRequestHandler):
    """A local server that records every request: a loaded image or a run script would hit it."""
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        Beacon.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def beacon():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Beacon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(tmp: Path, url: str, *extra: str) -> str:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=3000", *extra, url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.fixture(scope="module")
def pages(tmp_path_factory, beacon):
    root = tmp_path_factory.mktemp("browser")
    evil = (f"<script>document.title='PWNED';new Image().src='{beacon}/script-ran'</script> "
            f"![x]({beacon}/markdown-image.png) <img src=\"{beacon}/html-image.png\">")
    reports = make_reports(root, evil)
    report.main(["--params", str(PARAMS), "--reports", str(reports), "--lock", str(root / "none"),
                 "--out", str(reports)])
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render((reports / "report.md").read_text())
    (reports / "report.md.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
                                            f"<title>md</title></head><body>{body}</body></html>")
    return root, reports


def test_plots_render_and_nothing_runs_or_loads(pages):
    root, reports = pages
    Beacon.hits.clear()
    dom = chromium(root, (reports / "report.html").as_uri(), "--dump-dom")
    assert "<title>instructflow report</title>" in dom  # the corpus script did not retitle the page
    n_plots = len(re.findall(r"<svg\b", (reports / "report.html").read_text()))
    assert n_plots >= 8  # loss curves, data flow, per-category rates, ...
    assert len(re.findall(r"<svg\b", dom)) == n_plots and len(re.findall(r"<path\b", dom)) > 50
    assert "<img" not in dom and "<script" not in dom
    assert "![x](" in dom and "&lt;script&gt;" in dom  # the hostile text is there, as text
    shot = root / "report.png"
    chromium(root, (reports / "report.html").as_uri(), f"--screenshot={shot}", "--window-size=1200,9000")
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    blue = int((np.abs(pixels - np.array(PLOT_BLUE)).max(axis=-1) <= 8).sum())
    assert blue > 500, f"only {blue} plot-coloured pixels: the SVG plots did not draw"
    assert Beacon.hits == [], Beacon.hits


def test_markdown_report_as_rendered_loads_only_its_own_plots(pages):
    root, reports = pages
    Beacon.hits.clear()
    dom = chromium(root, (reports / "report.md.html").as_uri(), "--dump-dom")
    assert "<title>md</title>" in dom
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    assert srcs and all(s.startswith("plots/") and (reports / s).is_file() for s in srcs), srcs
    assert Beacon.hits == [], Beacon.hits


def test_control_the_beacon_sees_an_unescaped_image(tmp_path, beacon):
    """Without this, "no hits" could mean the browser never fetches anything in this setup."""
    Beacon.hits.clear()
    page = tmp_path / "control.html"
    page.write_text(f'<!DOCTYPE html><html><body><img src="{beacon}/control.png"></body></html>')
    chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert Beacon.hits == ["/control.png"]
