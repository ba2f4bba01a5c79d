"""Benchmark: the report at 10,000 scenarios, as a user meets it.

Builds a synthetic runs tree (``bench/synth.py``: N finished build instances, each with its
build record and three flow records, and the conductor's state file), then measures:

- ``write_report`` in a fresh process (first write), again in that process (a rewrite, and
  the slowest of several), and in another fresh process with nothing changed (``ductaflow
  report`` run again, a new conductor);
- the page's size and the size of the details files beside it;
- in Debian's Chromium (Playwright): time to first contentful paint, to the first page of
  rows, and to a filtered view (a search typed into the find box).

Run by hand: ``python bench/report_page.py [--instances 10000] [--runs DIR] [--no-browser]``
(``--runs`` keeps the synthetic tree in ``DIR`` and reuses it when it is already there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_WRITE = """
import json, sys, time
t0 = time.perf_counter()
from ductaflow.report.page import write_report
t1 = time.perf_counter(); write_report(sys.argv[1]); t2 = time.perf_counter()
again = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); write_report(sys.argv[1]); again.append(time.perf_counter() - t)
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "rewrite": again[0], "slowest": max(again)}))
"""
#: Rewrites timed in the first process: whether one of them includes a full collection of the
#: garbage collector depends on what came before, so the slowest is reported too.
REWRITES = 5
_AGAIN = """
import json, sys, time
from ductaflow.report.page import write_report
t0 = time.perf_counter(); write_report(sys.argv[1])
print(json.dumps({"again": time.perf_counter() - t0}))
"""


def _browser(report: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(report.as_uri())
        page.locator(".list details.scn").first.wait_for()
        rows = time.perf_counter() - t0
        paint = page.evaluate(
            "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0] || null"
        )
        t1 = time.perf_counter()
        page.fill("input.q", "_0123")
        while "(of" not in page.locator(".pos").inner_text():
            page.wait_for_timeout(5)
        filtered = time.perf_counter() - t1
        browser.close()
    return {"paint": (paint or 0) / 1000, "rows": rows, "filtered": filtered}


def _writes(runs: Path, instances: int) -> tuple[dict[str, float], int, int]:
    """Build the runs tree unless a finished one is there (its first report starts from no kept
    rows), time the writes, and measure the page and its details files."""
    sys.path.insert(0, str(HERE))
    from synth import synthetic_runs

    marker = runs / ".ductaflow" / f"bench-{instances}"
    if not marker.is_file():
        (runs / ".ductaflow").mkdir(parents=True, exist_ok=True)
        synthetic_runs(runs, instances)
        marker.touch()
    for cache in (runs / ".ductaflow" / "report_rows.json", runs / ".ductaflow" / "status_cache.json"):
        cache.unlink(missing_ok=True)  # the first write reads and writes everything, as in a new tree
    shutil.rmtree(runs / ".ductaflow" / "report", ignore_errors=True)
    command = [sys.executable, "-c", _WRITE, str(runs), str(REWRITES)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    times = json.loads(out.stdout)
    again = subprocess.run([sys.executable, "-c", _AGAIN, str(runs)], check=True, capture_output=True, text=True)
    times.update(json.loads(again.stdout))
    size = (runs / "conductor_status_report.html").stat().st_size
    details = sum(p.stat().st_size for p in (runs / ".ductaflow" / "report").rglob("*.js"))
    return times, size, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=Path, help="a folder of its own for the runs tree, reused when there")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurements")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs.absolute() if args.runs else Path(tmp) / "runs"
        times, size, details = _writes(runs, args.instances)
        seen = {} if args.no_browser else _browser(runs / "conductor_status_report.html")
    n = f"{args.instances:,}"
    print("| measurement | value |\n|---|---:|")
    print(f"| write_report, {n} scenarios, fresh process, first write | {times['first']:.2f} s |")
    print(f"| write_report, same process, rewrite | {times['rewrite']:.2f} s |")
    print(f"| write_report, same process, slowest of {REWRITES} rewrites | {times['slowest']:.2f} s |")
    print(f"| write_report, another fresh process, nothing changed | {times['again']:.2f} s |")
    print(f"| page size | {size / 1e6:.2f} MB |")
    print(f"| details files beside it | {details / 1e6:.1f} MB |")
    if seen:
        print(f"| Chromium: first contentful paint | {seen['paint']:.2f} s |")
        print(f"| Chromium: navigation to the first page of rows drawn | {seen['rows']:.2f} s |")
        print(f"| Chromium: search typed to filtered view drawn | {seen['filtered']:.2f} s |")


if __name__ == "__main__":
    main()
