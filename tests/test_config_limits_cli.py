"""``ductaflow run`` with configs over the limits (issue 14, item 8): exit 2, one line, nothing written.

Depth counts nested containers, dicts and lists together, the config's own dict being level 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from flowkit import all_files, ductaflow_cmd, make_project, read_json, write_flow
from test_fast_config_limits import nested_json

pytestmark = pytest.mark.kernel

DEPTH_FLOW = """
# %%
def depth(value):
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


given = {k: v for k, v in config.items() if not k.startswith("_")}
print("depth", depth(given))
assert depth(given) == 100, depth(given)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_flow(root, "x", DEPTH_FLOW)
    return root


def _refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one stderr line of a run refused as bad input (exit 2), checked for ``fragments``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("ductaflow: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert len(lines[0]) < 500, lines[0]
    return lines[0]


@pytest.mark.parametrize("levels", [101, 300, 2_000])
def test_cli_run_with_a_too_deep_config_file_exits_2_in_one_line_writing_nothing(project: Path, levels: int) -> None:
    (project / "deep.json").write_text(nested_json(levels))
    before = all_files(project)
    proc = ductaflow_cmd("run", "flows/x.py", "--config", "deep.json", "--output-dir", "d", cwd=project)
    line = _refused(proc, "config file", "deep.json", "nested deeper than 100 levels")
    assert ("key a[0].c[0]" in line) if levels < 900 else ("line 1, column " in line), line
    assert not (project / "d").exists()
    assert all_files(project) == before


def test_cli_run_accepts_100_levels_and_refuses_a_deeper_p_override(project: Path) -> None:
    (project / "ok.json").write_text(nested_json(100))
    ok = ductaflow_cmd("run", "flows/x.py", "--config", "ok.json", "--output-dir", "d", cwd=project)
    assert ok.returncode == 0, (ok.stdout, ok.stderr[-3000:])
    assert read_json(project / "d" / "x_status.json")["status"] == "green"
    before = all_files(project)
    deep_list = "[" * 150 + "]" * 150  # 151 levels with the config's own dict
    proc = ductaflow_cmd("run", "flows/x.py", "-p", f"a={deep_list}", "--output-dir", "d2", cwd=project)
    _refused(proc, "config key a[0][0]", "nested deeper than 100 levels")
    assert not (project / "d2").exists()
    assert all_files(project) == before


def test_cli_run_with_a_too_long_integer_in_the_config_file_names_the_key(project: Path) -> None:
    (project / "big.json").write_text('{"n": 1, "h": ' + "7" * 5001 + "}")
    before = all_files(project)
    proc = ductaflow_cmd("run", "flows/x.py", "--config", "big.json", "--output-dir", "d", cwd=project)
    _refused(proc, "big.json key h: integer with 5001 digits is longer than Python's limit of 4300")
    assert not (project / "d").exists()
    assert all_files(project) == before
