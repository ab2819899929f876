"""Render a lab report's figures (``FOLDER/figures/*.json`` from ``clsviz pretrain``) as PNG images
with Debian's headless Chromium, and copy its summary and metrics beside them, for the README.

    python scripts/lab_pngs.py lab-results docs/lab
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import plotly.io as pio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.browser import launch_chromium  # noqa: E402


def render(report: Path, out: Path, width: int = 1300, height: int = 460) -> list[Path]:
    """One PNG per figure of ``report`` into ``out``; returns the files written."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian package 'chromium'; scripts/ensure-chromium.sh)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        page = browser.new_page(viewport={"width": width + 40, "height": height + 40})
        for path in sorted((report / "figures").glob("*.json")):
            fig = pio.from_json(path.read_text(encoding="utf-8"))
            fig.update_layout(width=width, height=height, template="plotly_white")
            page.set_content(fig.to_html(include_plotlyjs=True, full_html=True))
            page.wait_for_function("() => { const g = document.querySelector('.js-plotly-plot'); return g && g._fullLayout; }")
            target = out / f"{path.stem}.png"
            page.locator(".js-plotly-plot").first.screenshot(path=str(target))
            written.append(target)
        browser.close()
    for name in ("summary.md", "metrics.csv"):
        if (report / name).is_file():
            shutil.copyfile(report / name, out / name)
            written.append(out / name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    for f in render(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f)
