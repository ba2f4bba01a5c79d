"""The report links only to files inside the runs root, and nothing that deletes or overwrites
(run, conduct, script mode, debug, debug_flow) follows a symlink out of the runs root. Real
symlinks, real files; no kernel is needed because every refusal comes before one starts."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from relkit import assert_rejected, cli, make_project, process, snapshot
from report_fixtures import make_instance, write_record, write_state

from ductaflow import debug_flow
from ductaflow.errors import UnsafePath
from ductaflow.report.page import write_report

SECTION = "Security: links and deletion"
URL = re.compile(r'\b(?:href|src|action|data)="([^"]*)"')
GOOD_FILES = ("good_status.json", "good_config.json", "good.ipynb", "good_execution_output.txt")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every runs root, holding files named like a flow's artifacts."""
    d = tmp_path / "outside"
    write_record(d, "good", "green")
    (d / "good_metrics.parquet").write_bytes(b"not yours")
    (d / "important.txt").write_text("keep me")
    (d / ".steps.json").write_text('["keep"]')
    return d


def _links(page: str) -> list[str]:
    return [u for u in URL.findall(page) if not u.startswith(("#", "data:image/svg+xml"))]


def test_report_links_stay_inside_the_runs_root(tmp_path: Path, outside: Path, case) -> None:
    c = case(
        "links: state file dirs with ../ and absolute paths, symlinked instance and log",
        "write_report on a runs root whose state file names ../outside, /etc, a/../../outside and a symlinked "
        "instance dir, and one flow log symlinked to a file outside; list every URL in the page",
    )
    runs = tmp_path / "runs"
    ok = make_instance(runs, "demand_model", "ok", [{"flow": "prep", "status": "green"}])
    (ok / "runs" / "prep" / "prep_execution_output.txt").unlink()
    (ok / "runs" / "prep" / "prep_execution_output.txt").symlink_to(outside / "important.txt")
    make_instance(tmp_path / "elsewhere", "demand_model", "linked", [{"flow": "prep", "status": "green"}])
    (runs / "demand_model" / "linked").symlink_to(tmp_path / "elsewhere" / "demand_model" / "linked")
    entries = [
        {"instance": name, "dir": d, "state": "done", "status": "green", "values": {}}
        for name, d in [("ok", "demand_model/ok"), ("linked", "demand_model/linked"), ("up", "../outside"),
                        ("abs", str(outside)), ("etc", "/etc"), ("sneaky", "demand_model/../../outside")]
    ]  # fmt: skip
    write_state(runs, "demand_model", entries, columns=[])
    page = write_report(runs).read_text(encoding="utf-8")
    links = _links(page)
    real_root = runs.resolve()
    for url in links:
        assert not url.startswith("/") and ":" not in url.split("/")[0] and ".." not in url.split("/"), url
        target = (runs / unquote(url.split("#")[0])).resolve()
        is_folder = url.split("#")[0].endswith("/") and target.is_dir()  # an instance's folder link
        assert (target.is_file() or is_folder) and target.is_relative_to(real_root), url
    assert not [u for u in links if "linked" in u], "a link leads through the symlinked instance dir"
    assert not [u for u in links if "prep_execution_output" in u], "a link leads to the symlinked log"
    expected = {"demand_model/ok/runs/prep/prep.ipynb", "demand_model/ok/runs/prep/prep_config.json"}
    assert expected <= set(links), links
    c.outcome = (
        f"{len(links)} file links, all relative and resolving inside the runs root; none for ../, absolute, "
        "or symlinked targets (those rows show without links)"
    )


def test_run_refuses_a_symlinked_instance_dir(project: Path, outside: Path, case) -> None:
    c = case(
        "delete: ductaflow run into a symlinked instance dir",
        "runs/good/victim -> a folder outside holding good_status.json etc.; ductaflow run flows/good.py "
        "--instance victim (and --no-execute)",
    )
    (project / "runs" / "good" / "victim").symlink_to(outside, target_is_directory=True)
    before, out_before = snapshot(project), snapshot(outside)
    ran = cli("run", "flows/good.py", "--instance", "victim", cwd=project)
    assert_rejected(ran, project, before, "runs/good/victim", "through a symlink")
    prepared = cli("run", "flows/good.py", "--instance", "victim", "--no-execute", cwd=project)
    assert_rejected(prepared, project, before, "through a symlink")
    assert snapshot(outside) == out_before, "files outside the runs root changed"
    c.outcome = f"exit 2, outside untouched (was: its good_* files deleted and rewritten): {ran.message[:150]}…"


def test_conduct_does_not_clear_a_symlinked_instance(project: Path, outside: Path, case) -> None:
    c = case(
        "delete: ductaflow conduct onto a symlinked build instance",
        "runs/pipe/victim -> a folder outside; ductaflow conduct with scenario 'victim'",
    )
    (outside / "pipe_status.json").write_text('{"status": "green"}')
    (project / "runs" / "pipe" / "victim").symlink_to(outside, target_is_directory=True)
    (project / "s.csv").write_text("scenario_name,n\nvictim,1\n")
    out_before = snapshot(outside)
    ran = cli("conduct", "s.csv", "--build", "builds/pipe.py", "--parallel", "1", cwd=project)
    assert snapshot(outside) == out_before, "files outside the runs root changed"
    assert ran.code == 2 and "through a symlink" in ran.err and "Traceback" not in ran.err, ran.out + ran.err
    assert not (project / "runs" / ".ductaflow" / "conductor").exists(), "the conductor started anyway"
    c.outcome = f"exit 2 before anything ran, outside untouched: {ran.err.strip()[:150]}…"


def test_script_mode_refuses_a_symlinked_output_dir(project: Path, outside: Path, case) -> None:
    c = case(
        "delete: a flow run as a script into a symlinked instance dir",
        "python flows/good.py --output-dir runs/good/victim (a symlink out of the runs root)",
    )
    (project / "runs" / "good" / "victim").symlink_to(outside, target_is_directory=True)
    before, out_before = snapshot(project), snapshot(outside)
    ran = process("flows/good.py", "--output-dir", "runs/good/victim", cwd=project)
    assert_rejected(ran, project, before, "through a symlink")
    assert snapshot(outside) == out_before
    c.outcome = f"exit 2, outside untouched: {ran.message[:150]}…"


def test_artifact_symlinks_inside_an_instance_are_unlinked_not_followed(project: Path, outside: Path, case) -> None:
    c = case(
        "delete: artifacts that are symlinks, a symlinked runs/ sub-folder",
        "in runs/good/keep, good_config.json and good_status.json -> files outside, runs/ -> a folder outside "
        "holding .steps.json; ductaflow run flows/good.py --instance keep --no-execute --force",
    )
    keep = project / "runs" / "good" / "keep"
    for name in ("good_config.json", "good_status.json"):
        (keep / name).unlink()
        (keep / name).symlink_to(outside / name)
    (keep / "runs").symlink_to(outside, target_is_directory=True)
    out_before = snapshot(outside)
    ran = cli("run", "flows/good.py", "--instance", "keep", "--no-execute", "--force", cwd=project)
    assert ran.code == 0, ran.err
    assert snapshot(outside) == out_before, "a file outside was deleted or written through a link"
    assert not (keep / "good_config.json").is_symlink() and (keep / "good_config.json").is_file()
    assert not (keep / "good_status.json").exists()
    c.outcome = "the links were removed (targets untouched) and a real config written; .steps.json outside kept"


def test_debug_refuses_links_out_of_the_runs_root(project: Path, outside: Path, case) -> None:
    c = case(
        "delete: ductaflow debug on a symlinked instance, or over a symlinked debug notebook",
        "ductaflow debug runs/good/victim (-> outside); ductaflow debug runs/good/keep --force where "
        "good_debug.ipynb -> a file outside; debug_flow(..., 'runs/good/victim')",
    )
    (project / "runs" / "good" / "victim").symlink_to(outside, target_is_directory=True)
    (outside / "notes.ipynb").write_text("my own notebook")
    keep = project / "runs" / "good" / "keep"
    (keep / "good_debug.ipynb").symlink_to(outside / "notes.ipynb")
    before, out_before = snapshot(project), snapshot(outside)
    linked = cli("debug", "runs/good/victim", cwd=project)
    assert_rejected(linked, project, before, "runs/good/victim", "through a symlink")
    forced = cli("debug", "runs/good/keep", "--force", cwd=project)
    assert_rejected(forced, project, before, "good_debug.ipynb is a symlink")
    with pytest.raises(UnsafePath):
        debug_flow(project / "flows" / "good.py", project / "runs" / "good" / "victim", force=True)
    assert snapshot(outside) == out_before and snapshot(project) == before
    c.outcome = "all three refused with exit 2 / UnsafePath; the outside notebook kept its content"


def test_a_symlinked_runs_root_is_fine(project: Path, tmp_path: Path, case) -> None:
    c = case(
        "delete: the runs root itself is a symlink (to a bigger disk)",
        "runs -> /bigdisk/runs; ductaflow run flows/good.py --instance new --no-execute",
    )
    big = tmp_path / "bigdisk" / "runs"
    big.parent.mkdir()
    (project / "runs").rename(big)
    (project / "runs").symlink_to(big, target_is_directory=True)
    ran = cli("run", "flows/good.py", "--instance", "new", "--no-execute", cwd=project)
    assert ran.code == 0, ran.err
    assert (big / "good" / "new" / "good_config.json").is_file()
    c.outcome = "allowed: the instance is prepared on the linked disk (only links out of the root are refused)"
