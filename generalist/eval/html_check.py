"""Open a report in a real headless browser (Debian's chromium) and check what a reader would see.

Checks: the page loads, no script error fired, every image (charts and GIFs, all inline) decoded,
the per-task table has one row per task. Also saves a screenshot.

    python -m generalist.eval.html_check DIR/report.html [--screenshot shot.png]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from generalist.errors import GeneralistError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-extensions", "--disable-sync", "--mute-audio",
         "--virtual-time-budget=15000"]


class BrowserNotFound(GeneralistError, RuntimeError):
    pass


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserNotFound("no chromium on PATH; install it with `apt-get install chromium` (Debian)")


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def check(page: Path, screenshot: Path | None = None, timeout: float = 120) -> dict[str, Any]:
    """What the browser saw; `ok` is True when everything passed, `problems` says what did not."""
    page = Path(page).resolve()
    res = _chromium(["--dump-dom", page.as_uri()], timeout)
    dom = res.stdout
    body = re.search(r"<body([^>]*)>", dom)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1))) if body else {}
    loaded, _, total = attrs.get("images", "0/0").partition("/")
    tables = re.findall(r'<table class="(\w+)">(.*?)</table>', dom, flags=re.S)
    rows = {cls: len(re.findall(r"<tr>", inner)) - 1 for cls, inner in tables}  # minus the header row
    out: dict[str, Any] = {"returncode": res.returncode, "images_loaded": int(loaded or 0),
                           "images_total": int(total or 0), "script_errors": int(attrs.get("errors", -1)),
                           "table_rows": rows, "dom_bytes": len(dom)}
    problems = []
    if res.returncode != 0 or not body:
        problems.append(f"chromium failed (exit {res.returncode}): {res.stderr[-500:]}")
    if "images" not in attrs:
        problems.append("the page's load handler never ran")
    if out["script_errors"] != 0:
        problems.append(f"{out['script_errors']} script error(s) on the page")
    if out["images_total"] == 0 or out["images_loaded"] != out["images_total"]:
        problems.append(f"images decoded: {out['images_loaded']}/{out['images_total']}")
    if rows.get("tasks", 0) < 1:
        problems.append("no per-task table rows")
    if screenshot is not None:
        shot = _chromium([f"--screenshot={Path(screenshot).resolve()}", "--window-size=1280,2400", page.as_uri()],
                         timeout)
        out["screenshot"] = str(screenshot) if Path(screenshot).exists() else None
        if shot.returncode != 0 or not out["screenshot"]:
            problems.append("screenshot failed")
    out["problems"] = problems
    out["ok"] = not problems
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", help="report.html to open")
    p.add_argument("--screenshot", help="also save a PNG screenshot here")
    args = p.parse_args(argv)
    try:
        res = check(Path(args.page), Path(args.screenshot) if args.screenshot else None)
    except BrowserNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in res.items():
        print(f"{k}: {v}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
