"""Fingerprints (``ductaflow.core.fingerprint``) and the changed config keys a re-run names
(``ductaflow.run.decide.changed_keys``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductaflow.core.fingerprint import (
    MAJOR,
    Fingerprint,
    config_hash,
    fingerprint,
    flow_hashes,
    referenced_flows,
)
from ductaflow.core.flowfile import read_flow
from ductaflow.run.decide import changed_keys

PARAMS = '# %% tags=["parameters"]\nconfig = {}\n\n'


def _flow(root: Path, rel: str, body: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PARAMS + body, encoding="utf-8")
    return path


# ---------------------------------------------------------------- config_hash
def test_config_hash_ignores_key_order_and_framework_keys_but_not_values() -> None:
    base = config_hash({"a": 1, "b": {"x": [1, 2]}})
    assert config_hash({"b": {"x": [1, 2]}, "a": 1}) == base
    assert config_hash({"a": 1, "b": {"x": [1, 2]}, "_project_root": "/p", "_instance": "i"}) == base
    assert config_hash({"a": 2, "b": {"x": [1, 2]}}) != base
    assert config_hash({"a": 1, "b": {"x": [2, 1]}}) != base
    assert config_hash({"a": 1.0, "b": {"x": [1, 2]}}) != base  # 1.0 is not 1 in the JSON a flow sees
    assert config_hash({"a": 1, "b": {"x": [1, 2]}, "c": None}) != base
    assert len(base) == 64


# ---------------------------------------------------------------- Fingerprint
def test_every_part_changes_the_value_and_parts_are_canonical() -> None:
    fp = Fingerprint("code", "cfg", ("u1",), {"b": "2", "a": "1"})
    assert fp.parts == {
        "major": MAJOR, "code": "code", "config": "cfg", "upstream": ["u1"], "flows": {"a": "1", "b": "2"},
    }  # fmt: skip
    assert list(fp.parts["flows"]) == ["a", "b"]
    assert len(fp.value) == 32
    assert Fingerprint("code", "cfg", ("u1",), {"a": "1", "b": "2"}).value == fp.value  # flows' order is not a change
    variants = [
        Fingerprint("code2", "cfg", ("u1",), {"a": "1", "b": "2"}),
        Fingerprint("code", "cfg2", ("u1",), {"a": "1", "b": "2"}),
        Fingerprint("code", "cfg", ("u2",), {"a": "1", "b": "2"}),
        Fingerprint("code", "cfg", ("u1", "u2"), {"a": "1", "b": "2"}),
        Fingerprint("code", "cfg", ("u1",), {"a": "1", "b": "3"}),
        Fingerprint("code", "cfg", ("u1",), {"a": "1"}),
        Fingerprint("code", "cfg", ("u1",), {"a": "1", "b": "2"}, major="999"),
        Fingerprint("code", "cfg", ("u1",), {"a": "1", "b": "2"}, kernel="altpy"),  # --kernel altpy
    ]
    assert "kernel" not in fp.parts  # absent when not asked for: older fingerprints still match
    assert len({fp.value, *(v.value for v in variants)}) == len(variants) + 1


# ---------------------------------------------------------------- code hashes and referenced flows
def test_code_hash_ignores_markdown_and_trailing_whitespace_only(tmp_path: Path) -> None:
    one = read_flow(_flow(tmp_path, "a/f.py", "# %%\nx = 1\ny = 2\n"))
    spaced = read_flow(_flow(tmp_path, "b/f.py", "# %% [markdown]\n# A note\n\n# %%\nx = 1   \ny = 2\n\n\n"))
    changed = read_flow(_flow(tmp_path, "c/f.py", "# %%\nx = 1\ny = 3\n"))
    split = read_flow(_flow(tmp_path, "d/f.py", "# %%\nx = 1\n\n# %%\ny = 2\n"))
    assert one.code_hash() == spaced.code_hash()
    assert one.code_hash() != changed.code_hash()
    assert one.code_hash() != split.code_hash(), "moving a line into another cell is a change"


def test_referenced_flows_are_the_string_literals_of_step_calls(tmp_path: Path) -> None:
    build = read_flow(_flow(tmp_path, "builds/b.py", (
        "# %%\nfrom ductaflow import step, run_step_flow, run_notebook\n"
        'step("flows/a.py", "a", {})\n'
        "run_step_flow(r'flows/b.py', 'b', 'i', {})\n"
        'step( "flows/a.py", "again", {})\n'
        'run_notebook("/abs/c.ipynb", {})\n'
        'path = "flows/not_a_call.py"\n'
        "step(path, 'dynamic', {})\n"
    )))  # fmt: skip
    assert referenced_flows(build, tmp_path) == [tmp_path / "flows/a.py", tmp_path / "flows/b.py", Path("/abs/c.ipynb")]


def test_a_builds_fingerprint_covers_the_code_of_its_flows(tmp_path: Path) -> None:
    _flow(tmp_path, "flows/a.py", "# %%\nx = 1\n")
    steps = '# %%\nstep("flows/a.py", "a", {})\nstep("flows/gone.py", "g", {})\n'
    build = read_flow(_flow(tmp_path, "builds/b.py", steps))
    hashes = flow_hashes(build, tmp_path)
    assert hashes == {"a": read_flow(tmp_path / "flows/a.py").code_hash(), "gone": "missing"}
    first = fingerprint(build, {"n": 1}, tmp_path, upstream=["up"])
    assert first.flows == hashes and first.upstream == ("up",) and first.config == config_hash({"n": 1})
    _flow(tmp_path, "flows/a.py", "# %%\nx = 2\n")
    second = fingerprint(build, {"n": 1}, tmp_path, upstream=["up"])
    assert second.value != first.value and second.code == first.code
    given = fingerprint(build, {"n": 1}, tmp_path, upstream=["up"], flows={"a": "precomputed"})
    assert given.flows == {"a": "precomputed"}, "flow hashes the caller passes are used as given"


# ---------------------------------------------------------------- changed_keys
@pytest.mark.parametrize(
    ("old", "new", "keys"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["a"]),
        ({"a": 1}, {"a": 1.0}, ["a"]),
        ({"a": 1}, {"a": 1, "b": 0}, ["b"]),
        ({"a": 1, "b": 0}, {"a": 1}, ["b"]),
        ({"m": {"x": 1, "y": {"z": 1}}}, {"m": {"x": 1, "y": {"z": 2}}}, ["m.y.z"]),
        ({"m": {"x": 1}}, {"m": {"x": 1, "w": 2}}, ["m.w"]),
        ({"m": {"x": 1}}, {"m": 5}, ["m", "m.x"]),
        ({"m": {}}, {"m": {}}, []),
        ({"m": {}}, {"m": {"k": 1}}, ["m", "m.k"]),
        ({"lst": [1, 2]}, {"lst": [2, 1]}, ["lst"]),
        ({"a": None}, {}, []),  # a missing key reads as None: no change to report
        ({"_project_root": "/a", "_instance": "x", "k": 1}, {"_project_root": "/b", "k": 1}, []),
        ({"b": 1, "a": 1, "c": 1}, {"b": 2, "a": 2, "c": 1}, ["a", "b"]),
    ],
)
def test_changed_keys_are_dotted_sorted_and_skip_framework_keys(old: dict, new: dict, keys: list[str]) -> None:
    assert changed_keys(old, new) == keys


def test_a_declared_kernelspec_other_than_python3_counts_in_the_code_hash(tmp_path: Path) -> None:
    """The same code in another kernel is another computation; declaring python3 changes nothing."""
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: K\n#     language: python\n"
              "#     name: {}\n# ---\n\n")
    plain = read_flow(_flow(tmp_path, "a/f.py", "# %%\nx = 1\n"))
    paths = {}
    for name in ("python3", "altpy"):
        paths[name] = tmp_path / name / "f.py"
        paths[name].parent.mkdir()
        paths[name].write_text(header.format(name) + PARAMS + "# %%\nx = 1\n", encoding="utf-8")
    assert read_flow(paths["python3"]).code_hash() == plain.code_hash()
    assert read_flow(paths["altpy"]).code_hash() != plain.code_hash()
