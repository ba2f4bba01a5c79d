"""Atomic writers (``ductaflow.store.atomic``): readers see the old file or the new one, never a torn
one; a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ductaflow.store import atomic
from ductaflow.store.atomic import atomic_write_json, atomic_write_text, read_json


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_makes_folders_and_the_file_readable_as_any_new_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "report.html"
    atomic_write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert path.read_bytes() == "héllo\n".encode()  # UTF-8 whatever the locale
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, "not private like a mkstemp file"
    assert _leftovers(path.parent) == []


def test_a_rewrite_replaces_the_file_whole_and_an_open_reader_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")
    inode = path.stat().st_ino
    with path.open(encoding="utf-8") as reader:
        atomic_write_text(path, "new")
        assert reader.read() == "old"
    assert path.read_text() == "new" and path.stat().st_ino != inode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    atomic_write_text(path, "earlier")
    with pytest.raises(TypeError):
        atomic_write_text(path, 12345)  # type: ignore[arg-type]
    assert path.read_text() == "earlier" and _leftovers(tmp_path) == []
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "lone \ud800 surrogate")
    assert path.read_text() == "earlier" and _leftovers(tmp_path) == []


def test_json_is_indented_utf8_with_a_final_newline_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    data = {"name": "été", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    atomic_write_json(path, data)
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    assert "été" in text
    assert read_json(path) == data


def test_large_json_is_written_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_INDENT_LIMIT", 20)
    path = tmp_path / "big.json"
    data = {"values": list(range(10))}
    atomic_write_json(path, data)
    assert path.read_text() == json.dumps(data, ensure_ascii=False) + "\n"
    atomic_write_json(path, {"a": 1})  # under the limit again: indented
    assert path.read_text() == '{\n  "a": 1\n}\n'


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}])
def test_json_that_cannot_be_written_leaves_the_old_file(tmp_path: Path, bad: dict) -> None:
    path = tmp_path / "rec.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises((ValueError, TypeError)):
        atomic_write_json(path, bad)
    assert read_json(path) == {"ok": 1} and _leftovers(tmp_path) == []
