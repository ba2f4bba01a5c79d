"""Config limits (issue 14, item 8): depth, huge integers and NUL in paths are clear errors, raised early.

Depth is counted in nested containers, dicts and lists together, the config's own dict being level 1:
``{"a": [1]}`` is 2 levels deep. Up to 100 levels are accepted; the injected ``config = {...}`` literal
of a deeper config would not compile in the kernel (~200 brackets) and Python's recursion would run out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flowkit import all_files, make_project, write_flow

from ductaflow.core import config as config_module
from ductaflow.core.config import find_project_root, load_config_file, normalise_config, to_jsonable
from ductaflow.core.flowfile import config_cell_source, read_flow
from ductaflow.errors import ConfigError, DuctaflowError, UnsafePath
from ductaflow.run.execute import make_plan
from ductaflow.store.layout import contained_dir

INT_LIMIT = 4300  # Python's default (sys.get_int_max_str_digits)


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """A config ``levels`` containers deep: the top dict, then lists and dicts in turn (keys c, e, g, ...)."""
    value: Any = leaf
    for i in range(levels - 1, 0, -1):
        value = [value] if i % 2 else {chr(ord("a") + i % 26): value}
    return {"a": value}


def nested_json(levels: int) -> str:
    """:func:`nested` as JSON text, built without recursion (``json.dumps`` gives up near 1,000 levels)."""
    opens, closes = ['{"a": '], ["}"]
    for i in range(1, levels):
        opens.append("[" if i % 2 else f'{{"{chr(ord("a") + i % 26)}": ')
        closes.append("]" if i % 2 else "}")
    return "".join(opens) + "1" + "".join(reversed(closes))


def key_path(levels: int) -> str:
    """The key path of the container at level ``levels`` of :func:`nested` (what the error names)."""
    parts = ["a"]
    for i in range(1, levels - 1):
        parts.append("[0]" if i % 2 else f".{chr(ord('a') + i % 26)}")
    return "".join(parts)


@pytest.fixture
def int_limit() -> Iterator[None]:
    """Python's default limit for int <-> str conversion, restored afterwards."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(INT_LIMIT)
    yield
    sys.set_int_max_str_digits(before)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# ---------------------------------------------------------------- depth
def test_depth_100_is_accepted_and_101_names_the_key_path() -> None:
    assert getattr(config_module, "MAX_DEPTH", None) == 100
    ok = nested(100)
    assert _depth(ok) == 100
    assert normalise_config(ok) == ok
    compile(config_cell_source(ok), "<injected>", "exec")  # the literal the kernel will parse
    assert _depth(nested(101)) == 101
    with pytest.raises(ConfigError) as info:
        normalise_config(nested(101))
    message = str(info.value)
    assert message.startswith("config key a[0].c[0]"), message
    assert message.endswith("nested deeper than 100 levels"), message
    assert "\n" not in message


def test_a_short_key_path_is_named_whole() -> None:
    deep: Any = {"leaf": 1}
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ConfigError, match=r"^scenario 3 key x\[0\]\[0\]"):
        to_jsonable({"x": deep}, "scenario 3")
    chain: Any = 1
    for _ in range(101):
        chain = {"k" * 30: chain}
    with pytest.raises(ConfigError) as info:  # 100 keys of 30 characters: the middle is left out
        normalise_config(chain)
    message = str(info.value)
    assert message.startswith("config key " + "k" * 30 + "." + "k" * 30), message
    assert message.endswith("k" * 30 + ": nested deeper than 100 levels") and len(message) < 400, message


@pytest.mark.parametrize("levels", [300, 2_000, 50_000])
def test_very_deep_configs_are_a_config_error_not_a_recursion_error(levels: int) -> None:
    with pytest.raises(ConfigError, match=r"^config key a\[0\]\.c.* nested deeper than 100 levels$"):
        normalise_config(nested(levels))


def test_a_config_that_contains_itself_is_too_deep() -> None:
    loop: dict[str, Any] = {"x": 1}
    loop["self"] = loop
    with pytest.raises(ConfigError, match=r"^config key self\.self\.self.*nested deeper than 100 levels$"):
        normalise_config(loop)


def test_a_json_file_may_be_100_levels_deep_not_101(tmp_path: Path) -> None:
    ok, deep = tmp_path / "ok.json", tmp_path / "deep.json"
    ok.write_text(nested_json(100))
    deep.write_text(nested_json(101))
    assert json.loads(nested_json(100)) == nested(100)
    assert load_config_file(ok) == nested(100) == normalise_config(ok)
    with pytest.raises(ConfigError) as info:
        load_config_file(deep)
    message = str(info.value)  # a long key path is named by its start and its end
    assert message.startswith(f"config file {deep} key {key_path(101)[:60]}"), message
    assert message.endswith(f"{key_path(101)[-40:]}: nested deeper than 100 levels"), message


@pytest.mark.parametrize("levels", [300, 5_000])
def test_a_very_deep_json_file_names_the_file_and_where(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text(nested_json(levels))
    with pytest.raises(ConfigError, match="nested deeper than 100 levels") as info:
        load_config_file(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    # json.loads itself gives up near 1,000 levels: then the place is given as line and column
    prefix = nested_json(101)[: nested_json(101).index("1")]
    column = max(prefix.rfind("["), prefix.rfind("{")) + 1  # where level 101 opens
    if levels < 900:
        assert f"key {key_path(101)[:60]}" in message and f"{key_path(101)[-40:]}: nested" in message, message
    else:
        assert message.endswith(f"nested deeper than 100 levels (level 101 opens at line 1, column {column})")


# ---------------------------------------------------------------- integers beyond str conversion
@pytest.mark.usefixtures("int_limit")
def test_an_integer_too_long_to_write_names_the_key_and_the_limit() -> None:
    with pytest.raises(ConfigError) as info:
        normalise_config({"h": 10**5000})
    assert str(info.value) == "config key h: integer with 5001 digits is longer than Python's limit of 4300"
    with pytest.raises(ConfigError, match=r"^config key a\[1\]\.n: integer with 4301 digits is longer"):
        normalise_config({"a": [1, {"n": -(10**4300)}]})
    with pytest.raises(ConfigError, match=r"^row 2, column 'h': integer with 5001 digits"):
        to_jsonable(10**5000, "row 2, column 'h'")


@pytest.mark.usefixtures("int_limit")
def test_big_but_legal_integers_pass_and_one_digit_more_does_not() -> None:
    legal = {"big": 10**4299, "neg": -(10**4300 - 1), "bits": 2**14000, "small": -3, "zero": 0}
    assert len(str(legal["neg"])) == 4301 and len(str(legal["bits"])) < 4300
    out = normalise_config(legal)
    assert out == legal
    compile(config_cell_source(out), "<injected>", "exec")
    with pytest.raises(ConfigError, match=r"^config key neg: integer with 4301 digits is longer"):
        normalise_config({**legal, "neg": -(10**4300)})


def test_the_integer_limit_follows_python_s_setting() -> None:
    before = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(640)
        with pytest.raises(ConfigError, match="integer with 700 digits is longer than Python's limit of 640"):
            normalise_config({"h": 10**699})
        sys.set_int_max_str_digits(0)  # no limit
        assert normalise_config({"h": 10**9000}) == {"h": 10**9000}
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.usefixtures("int_limit")
def test_a_json_file_with_a_too_long_integer_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"ok": 12, "zones": [{"h": ' + "9" * 5001 + "}]}")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value) == (
        f"config file {path} key zones[0].h: integer with 5001 digits is longer than Python's limit of 4300"
    )


def test_a_json_number_beyond_float_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text('{"x": {"y": 1e400}}')
    with pytest.raises(ConfigError, match=r"key x\.y: number too large for a float"):
        load_config_file(path)


# ---------------------------------------------------------------- NUL in paths
@pytest.mark.parametrize("where", ["leaf", "root"])
def test_contained_dir_refuses_nul_naming_the_path(tmp_path: Path, where: str) -> None:
    bad = str(tmp_path / "runs" / "a\x00b")
    with pytest.raises(UnsafePath) as info:
        if where == "leaf":
            contained_dir(bad)
        else:
            contained_dir(tmp_path / "runs" / "x", [str(tmp_path / "ru\x00ns")])
    message = str(info.value)
    assert "NUL" in message and "\\x00" in message and "\x00" not in message and "\n" not in message


def test_config_file_flow_and_project_paths_with_nul_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*\\x00.* NUL"):
        load_config_file(str(tmp_path / "c\x00.json"))
    with pytest.raises(ConfigError, match="NUL"):
        normalise_config(tmp_path / "c\x00.json")
    with pytest.raises(DuctaflowError, match=r"flow file .*\\x00.* NUL"):
        read_flow(str(tmp_path / "flows" / "x\x00.py"))
    with pytest.raises(DuctaflowError, match=r"\\x00.* NUL"):
        find_project_root(str(tmp_path / "p\x00q"))


@pytest.mark.parametrize("what", ["execution_dir", "runs_root"])
def test_a_run_refuses_a_nul_path_before_writing_anything(tmp_path: Path, what: str) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "x", "# %%\nprint(1)\n")
    before = all_files(tmp_path)
    kwargs: dict[str, Any] = (
        {"execution_dir": str(root / "runs" / "x" / "a\x00b")}
        if what == "execution_dir"
        else {"context": {"runs_root": str(root / "ru\x00ns")}}
    )
    with pytest.raises(UnsafePath, match="NUL"):
        make_plan(flow, {}, kwargs.pop("execution_dir", None), root, **kwargs)  # run_notebook's first step
    assert all_files(tmp_path) == before


@pytest.mark.usefixtures("int_limit")
@pytest.mark.parametrize(
    "config",
    [nested(101), {"h": 10**5000}],
    ids=["deep", "huge-int"],
)
def test_a_run_refuses_a_config_over_the_limits_before_writing_anything(tmp_path: Path, config: dict[str, Any]) -> None:
    root = make_project(tmp_path)
    flow = write_flow(root, "x", "# %%\nprint(1)\n")
    before = all_files(tmp_path)
    with pytest.raises(ConfigError, match=r"^config key (a\[0\]|h)"):
        make_plan(flow, config, None, root)  # run_notebook's first step
    assert all_files(tmp_path) == before
