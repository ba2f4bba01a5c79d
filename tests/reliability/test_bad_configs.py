"""Bad configs to ``ductaflow run``, ``ductaflow conduct`` and a flow run as a script: exit 2, one
message naming the file and the place, nothing on disk changed. A huge config works, fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from relkit import TRICKY, assert_rejected, cli, make_project, outcome, process, read_json, same, snapshot

SECTION = "Bad input: configs"

BAD = {
    "syntax.json": (b'{\n  "n": 1,\n  "m": tru\n}\n', ["syntax.json", "line 3, column 8"]),
    "list.json": (b"[1, 2]\n", ["list.json", "JSON object", "an array"]),
    "null.json": (b"null\n", ["null.json", "JSON object", "found null"]),
    "latin1.json": ('{"name": "café"}'.encode("latin-1"), ["latin1.json", "byte 0xe9 at line 1, column 14"]),
    "surrogate.json": (b'{"name": "half \\ud800 pair"}', ["surrogate.json", "name", "lone surrogate"]),
    "nan.json": (b'{"n": NaN}', ["nan.json", "NaN is not JSON"]),
    "twice.json": (b'{"n": 1, "n": 2}', ["twice.json", "'n' appears twice"]),
    "dash_key.json": (b'{"n": 1, "max-iter": 3}', ["dash_key.json", "'max-iter' is not a Python name"]),
    "keyword_key.json": (b'{"n": 1, "class": "A"}', ["keyword_key.json", "'class' is not a Python name"]),
    "digit_key.json": (b'{"n": 1, "2nd": 2}', ["digit_key.json", "'2nd' is not a Python name"]),
}
WHAT = {
    "syntax.json": "invalid JSON (a bare word at line 3)",
    "list.json": "a JSON list at top level",
    "null.json": "JSON null at top level",
    "latin1.json": "non-UTF-8 bytes (Latin-1 é)",
    "surrogate.json": "a lone UTF-16 surrogate escape (valid JSON, not storable as UTF-8)",
    "nan.json": "NaN (Python's json accepts it; JSON does not)",
    "twice.json": "one key given twice (JSON would keep the last silently)",
    "dash_key.json": "a key that is not an identifier (max-iter)",
    "keyword_key.json": "a key that is a Python keyword (class)",
    "digit_key.json": "a key starting with a digit (2nd)",
}

@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    for name, (data, _) in BAD.items():
        (root / "bad" / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", list(BAD))
def test_bad_config_file(project: Path, case, name: str) -> None:
    """One bad file through three doors: run (into an existing instance), conduct, script mode."""
    c = case(
        f"config: {WHAT[name]}",
        f"bad/{name} given to 'ductaflow run flows/good.py --instance keep' (an existing instance), "
        "'ductaflow conduct --base-config' and 'python flows/good.py --config ... --output-dir runs/good/keep'",
    )
    culprits = BAD[name][1]
    before = snapshot(project)
    run = cli("run", "flows/good.py", "--config", f"bad/{name}", "--instance", "keep", cwd=project)
    assert_rejected(run, project, before, *culprits)
    (project / "s.csv").write_text("scenario_name,n\na,1\n")
    before = snapshot(project)
    conduct = cli("conduct", "s.csv", "--build", "builds/pipe.py", "--base-config", f"bad/{name}", cwd=project)
    assert_rejected(conduct, project, before, *culprits)
    script = process("flows/good.py", "--config", f"bad/{name}", "--output-dir", "runs/good/keep", cwd=project)
    assert_rejected(script, project, before, *culprits)
    c.outcome = f"all three exit 2, nothing on disk changed; run says: {run.message}"


def test_bad_override_key(project: Path, case) -> None:
    c = case("config: -p with a key that is not an identifier", "ductaflow run flows/good.py -p max-iter=3")
    before = snapshot(project)
    ran = cli("run", "flows/good.py", "-p", "max-iter=3", cwd=project)
    assert_rejected(ran, project, before, "'max-iter' is not a Python name")
    c.outcome = outcome(ran)


def test_bom_is_accepted(project: Path, case) -> None:
    c = case(
        "config: UTF-8 with a byte order mark (Windows Notepad)",
        "ductaflow run flows/good.py --config bom.json --instance bom --no-execute",
    )
    (project / "bom.json").write_bytes(b'\xef\xbb\xbf{"n": 7}')
    ran = cli("run", "flows/good.py", "--config", "bom.json", "--instance", "bom", "--no-execute", cwd=project)
    assert ran.code == 0, ran.err
    recorded = read_json(project / "runs" / "good" / "bom" / "good_config.json")
    assert recorded["n"] == 7
    c.outcome = "accepted: exit 0, the instance's recorded config has n=7"


def test_tricky_values_round_trip_in_script_mode(project: Path, tmp_path: Path, case) -> None:
    c = case(
        "config: quotes, newlines, backslashes, unicode, control characters, big numbers (script mode)",
        "python flows/good.py --config tricky.json --output-dir out; the flow dumps the config it got",
    )
    (project / "tricky.json").write_text(json.dumps({"n": 1, **TRICKY}), encoding="utf-8")
    ran = process("flows/good.py", "--config", "tricky.json", "--output-dir", "out", cwd=project)
    assert ran.code == 0, ran.err
    seen = read_json(project / "out" / "seen.json")
    assert seen.pop("_project_root") == str(project.resolve())
    assert same(seen, {"n": 1, **TRICKY})
    assert read_json(project / "out" / "good_status.json")["status"] == "green"
    c.outcome = f"exit 0, green; the flow saw all {len(TRICKY)} values exactly (JSON-identical, -0.0 and 2**70 kept)"


@pytest.mark.timeout(120)
def test_huge_config_runs_in_a_kernel(project: Path, case) -> None:
    """10 MB of JSON: injected by reading the recorded config file, not as a 10 MB literal."""
    c = case(
        "config: 10 MB (60,000 zone records plus the tricky values)",
        "ductaflow run flows/good.py --config big.json --instance big (a real kernel); compare what the flow saw",
    )
    zones = [
        {"id": f"z{i:05d}", "name": f"Zône «{i}» \"q\"", "pop": i * 1.5, "tags": ["a", "b"] * 20} for i in range(60_000)
    ]
    big = {"n": 1, **TRICKY, "zones": zones}
    text = json.dumps(big, ensure_ascii=False)
    assert len(text.encode()) > 10_000_000
    (project / "big.json").write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    ran = process("-m", "ductaflow", "run", "flows/good.py", "--config", "big.json", "--instance", "big", cwd=project)
    took = time.monotonic() - t0
    assert ran.code == 0, ran.err
    inst = project / "runs" / "good" / "big"
    seen = read_json(inst / "seen.json")
    seen.pop("_project_root")
    assert same(seen, big), "the kernel saw a different config"
    notebook_mb = (inst / "good.ipynb").stat().st_size / 1e6
    assert notebook_mb < 1, f"the executed notebook repeats the config: {notebook_mb:.1f} MB"
    c.outcome = (
        f"green in {took:.0f} s; the kernel saw the config exactly; the notebook stays {notebook_mb * 1000:.0f} kB "
        "(the injected cell reads the recorded good_config.json)"
    )
