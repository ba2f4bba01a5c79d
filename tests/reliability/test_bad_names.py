"""Unsafe instance and step names through every door that takes one: exit 2 (or InvalidName),
the name quoted in the message, nothing on disk changed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from relkit import assert_rejected, cli, make_project, snapshot

from ductaflow import InvalidName, run_step_flow

SECTION = "Bad input: names"

NAMES = {
    "dotdot": "..",
    "absolute": "/abs",
    "slash": "a/b",
    "backslash": "a\\b",
    "empty": "",
    "whitespace": " ",
    "surrounding-space": " a ",
    "tab": "a\tb",
    "NUL": "a\x00b",
    "300-chars": "x" * 300,
    "CON": "CON",
    "nul-lower": "nul",
    "COM1": "COM1",
    "LPT9.txt": "LPT9.txt",
    "trailing-dot": "run1.",
    "leading-dot": ".hidden",
    "accents": "scénario",
    "html": "<b>x</b>",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.mark.parametrize("key", list(NAMES))
def test_unsafe_name(project: Path, case, key: str) -> None:
    name = NAMES[key]
    c = case(
        f"name: {key} ({name[:12]!r}{'…' if len(name) > 12 else ''})",
        "as --instance of 'ductaflow run', as a scenario_name in a Parquet table given to 'ductaflow conduct', "
        "as the step name of run_step_flow()",
    )
    before = snapshot(project)
    run = cli("run", "flows/good.py", "--instance", name, cwd=project)
    assert_rejected(run, project, before, "instance name", repr(name))
    pd.DataFrame({"scenario_name": ["ok", name], "n": [1, 2]}).to_parquet(project / "s.parquet")
    before = snapshot(project)
    conduct = cli("conduct", "s.parquet", "--build", "builds/pipe.py", cwd=project)
    assert_rejected(conduct, project, before, "instance name of row 1", repr(name))
    assert "row 0" not in conduct.err, "the good row was blamed"
    with pytest.raises(InvalidName, match="step name"):
        run_step_flow(project / "flows" / "good.py", name, "inst", {}, project_root=project)
    assert not snapshot(project).keys() - before.keys()
    c.outcome = f"all three refused; run: exit 2, {run.message}"


def test_names_differing_only_by_case(project: Path, case) -> None:
    c = case(
        "name: two scenarios differing only by case (Base, base)",
        "ductaflow conduct on a CSV with scenario_name Base and base (they would share one folder on "
        "Windows and macOS)",
    )
    (project / "s.csv").write_text("scenario_name,n\nBase,1\nother,2\nbase,3\n")
    before = snapshot(project)
    ran = cli("conduct", "s.csv", "--build", "builds/pipe.py", cwd=project)
    assert_rejected(ran, project, before, "rows 0 and 2 both name instance 'base'")
    c.outcome = f"exit 2, nothing written: {ran.message}"
