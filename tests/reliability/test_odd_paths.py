"""One real conductor run where every path holds spaces, an apostrophe or accents: project dir,
build name, flow name, scenario file and runs root. It also carries the tricky config values
through two injections (conductor -> build -> step) and checks the kernels saw them exactly."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from relkit import TRICKY, UNICODE_BUILD, UNICODE_FLOW, cli, read_json, same

SECTION = "Paths with spaces and accents"
A_HREF = re.compile(r'<a\b[^>]*\bhref="([^"]*)"')


@pytest.mark.timeout(240)
def test_unicode_paths_end_to_end(unicode_run, case) -> None:
    c = case(
        "paths: spaces, an apostrophe and accents everywhere",
        f"python -m ductaflow conduct 'scén arios.csv' --build 'builds/{UNICODE_BUILD}.py' --runs-root 'sorties été' "
        f"in the project dir \"projet d'été ü\"; the build steps 'flows/{UNICODE_FLOW}.py'",
    )
    ran, runs, inst = unicode_run.ran, unicode_run.runs, unicode_run.instance
    assert " " in str(unicode_run.project) and "'" in str(unicode_run.project) and "é" in str(runs)
    assert ran.code == 0, ran.err
    assert "1 scenario(s): 0 green, 1 orange, 0 red" in ran.out, ran.out
    flow_dir = inst / "runs" / "modele"
    for suffix in (".ipynb", "_execution_output.txt", "_config.json", "_status.json", "_metrics.parquet"):
        assert (flow_dir / f"{UNICODE_FLOW}{suffix}").is_file(), suffix
    assert read_json(inst / f"{UNICODE_BUILD}_status.json")["status"] == "green"
    assert read_json(flow_dir / f"{UNICODE_FLOW}_status.json")["status"] == "orange"
    assert "skipping unreadable" not in ran.err, "the report dropped the build because of its name"
    page = (runs / "conductor_status_report.html").read_text(encoding="utf-8")
    assert f"<h2 id=\"b0-h\">{UNICODE_BUILD}</h2>" in page
    links = [h for h in A_HREF.findall(page) if not h.startswith("#")]
    assert len(links) >= 6, links
    for href in links:
        target = runs / unquote(href.split("#")[0])
        is_folder = href.split("#")[0].endswith("/") and target.is_dir()  # an instance's folder link
        assert (target.is_file() or is_folder) and target.resolve().is_relative_to(runs.resolve()), href
    status = cli("status", "sorties été", cwd=unicode_run.project)
    assert status.code == 0 and UNICODE_BUILD in status.out and UNICODE_FLOW in status.out, status.out + status.err
    assert "1 instance(s): 0 green, 1 orange, 0 red" in status.out
    c.outcome = (
        f"exit 0 in {unicode_run.seconds:.0f} s, orange as the flow warned; all records written under the accented "
        f"names; the report shows the build and its {len(links)} file links resolve to files inside the runs root; "
        "'ductaflow status' lists it"
    )


def test_tricky_values_reach_both_kernels(unicode_run, case) -> None:
    c = case(
        "config: quotes, newlines, backslashes, unicode, control characters, big numbers (kernels)",
        "the same conductor run: the build's default config holds them, the build passes them to its step; "
        "both kernels dump the config they got",
        "Bad input: configs",
    )
    assert unicode_run.ran.code == 0, unicode_run.ran.err
    build_seen = read_json(unicode_run.instance / "build_seen.json")
    flow_seen = read_json(unicode_run.instance / "runs" / "modele" / "seen.json")
    assert same(build_seen["tricky"], TRICKY), "the build's kernel saw different values"
    assert same(flow_seen["tricky"], TRICKY), "the step's kernel saw different values"
    assert isinstance(flow_seen["tricky"]["numbers"][4], int) and str(flow_seen["tricky"]["numbers"][3]) == "-0.0"
    c.outcome = f"both kernels saw all {len(TRICKY)} values JSON-identical (NUL, CR, U+2028, -0.0, 2**70 included)"
