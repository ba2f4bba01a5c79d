"""Configs (``ductaflow.core.config``): loading with precise errors, merging, JSON safety, the root."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ductaflow.core.config import (
    canonical_json,
    check_keys,
    deep_merge,
    find_project_root,
    load_config_file,
    normalise_config,
    to_jsonable,
)
from ductaflow.errors import ConfigError


def _file(tmp_path: Path, data: str | bytes, name: str = "c.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# ---------------------------------------------------------------- load_config_file
def test_a_json_object_loads_nested_keys_are_free_and_a_bom_is_accepted(tmp_path: Path) -> None:
    doc = {"n": 1, "zones": {"zone 1": [1.5, 2], "été": None}, "flag": True}
    assert load_config_file(_file(tmp_path, json.dumps(doc))) == doc
    assert load_config_file(_file(tmp_path, b"\xef\xbb\xbf" + json.dumps(doc).encode(), "bom.json")) == doc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "n": 1,\n  "m": tru\n}\n', r"not valid JSON: .* at line 3, column 8"),
        ("[1, 2]", r"must hold a JSON object \{\.\.\.\}, found an array \(list\)"),
        ("null", "found null"),
        ('"text"', "found a string"),
        ("true", r"found true/false \(bool\)"),
        ('{"x": NaN}', "NaN is not JSON"),
        ('{"x": -Infinity}', "-Infinity is not JSON"),
        ('{"a": 1, "b": {"c": 1, "c": 2}}', "key 'c' appears twice in one object"),
        ('{"max-iter": 3}', r"key 'max-iter' is not a Python name"),
        ('{"class": 3}', r"key 'class' is not a Python name"),
        ('{"1st": 3}', r"key '1st' is not a Python name"),
        ('{"s": "\\ud800"}', r"at 's' holds a lone surrogate"),
    ],
)
def test_bad_files_are_rejected_naming_the_file_and_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config_file(path)
    assert str(path) in str(info.value)


def test_a_missing_file_and_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config_file(tmp_path / "nope.json")
    path = _file(tmp_path, b'{"a": 1,\n "b": "\xff"}')
    with pytest.raises(ConfigError, match=r"not UTF-8 text: byte 0xff at line 2, column 8"):
        load_config_file(path)


def test_check_keys_names_the_place() -> None:
    check_keys({"ok_name": 1, "_private": 2})
    with pytest.raises(ConfigError, match=r"^scenario 3: key 'a b'"):
        check_keys({"a b": 1}, "scenario 3")
    with pytest.raises(ConfigError, match="key 1 is not a Python name"):
        check_keys({1: "x"})  # type: ignore[dict-item]


# ---------------------------------------------------------------- deep_merge
def test_deep_merge_merges_nested_mappings_and_replaces_everything_else() -> None:
    base = {"a": 1, "nested": {"x": 1, "y": {"deep": 1, "keep": 2}}, "lst": [1, 2], "scalar": {"was": "dict"}}
    over = {"nested": {"y": {"deep": 9}, "z": 3}, "lst": [3], "scalar": 5, "new": None}
    merged = deep_merge(base, over)
    assert merged == {
        "a": 1,
        "nested": {"x": 1, "y": {"deep": 9, "keep": 2}, "z": 3},
        "lst": [3],
        "scalar": 5,
        "new": None,
    }
    assert base["nested"]["y"] == {"deep": 1, "keep": 2}, "the base was changed in place"
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}  # a dict replaces a scalar whole


# ---------------------------------------------------------------- to_jsonable / normalise_config
def test_numpy_pandas_paths_and_dates_become_json_types() -> None:
    value = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "b": np.bool_(True),
        "arr": np.array([[1, 2], [3, 4]]),
        "t": (1, "two"),
        "p": Path("/data/x.csv"),
        "ts": pd.Timestamp("2024-05-01 13:02:11"),
        "d": date(2024, 1, 2),
        "plain": True,
    }
    out = to_jsonable(value)
    assert out == {
        "i": 3, "f": 0.5, "b": True, "arr": [[1, 2], [3, 4]], "t": [1, "two"], "p": "/data/x.csv",
        "ts": "2024-05-01T13:02:11", "d": "2024-01-02", "plain": True,
    }  # fmt: skip
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["f"]) is float
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"g": float("nan")}, r"config.g is nan; JSON cannot hold NaN"),
        ({"g": [1, float("inf")]}, r"config.g\[1\] is inf"),
        ({"g": np.float64("nan")}, "JSON cannot hold NaN"),
        ({"when": pd.NaT}, "NaT"),
        ({"g": {1: "a"}}, "non-string key 1"),
        ({"g": object()}, "type object that JSON cannot hold"),
        ({"g": {1, 2}}, "type set"),
    ],
)
def test_values_json_cannot_hold_are_rejected_with_their_path(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_jsonable(value)


def test_normalise_config_accepts_none_a_mapping_or_a_file(tmp_path: Path) -> None:
    assert normalise_config(None) == {}
    assert normalise_config({"n": np.int64(2)}) == {"n": 2}
    path = _file(tmp_path, '{"n": 3}')
    assert normalise_config(path) == normalise_config(str(path)) == {"n": 3}
    with pytest.raises(ConfigError, match="must be a dict or a path to a JSON file, got list"):
        normalise_config([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="key 'a-b' is not a Python name"):
        normalise_config({"a-b": 1}, "the build config")


def test_canonical_json_ignores_key_order_and_spacing_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": "é"}}) == '{"a":{"c":"é","d":2},"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# ---------------------------------------------------------------- find_project_root
def test_find_project_root_walks_up_to_a_marker_else_falls_back(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "flows" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    flow = project / "flows" / "deep" / "x.py"
    flow.write_text("")
    assert find_project_root(flow) == project.resolve()
    assert find_project_root(project / "flows") == project.resolve()
    loose = tmp_path / "loose"
    (loose / "builds").mkdir(parents=True)
    (loose / "builds" / "b.py").write_text("")
    # no marker anywhere above (tmp_path has none): the folder above builds/, else the folder itself
    if not any((p / m).exists() for p in tmp_path.parents for m in ("pyproject.toml", ".git", "ductaflow.toml")):
        assert find_project_root(loose / "builds" / "b.py") == loose.resolve()
        assert find_project_root(loose) == loose.resolve()
