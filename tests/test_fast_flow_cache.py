"""Parsed flows kept between processes (``ductaflow.store.flow_cache``): a flow is taken from the
cache only while its file is exactly as it was parsed; any edit, even one that keeps the size and
puts the modification time back, is parsed again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ductaflow.core.flowfile import read_flow
from ductaflow.errors import FlowFileError
from ductaflow.store import flow_cache
from ductaflow.store.flow_cache import FlowCache
from ductaflow.store.layout import FLOW_CACHE

FLOW = '# %% tags=["parameters"]\nconfig = {"alpha": 1}\n\n# %%\nprint(config["alpha"] * 2)\n'


def _aged(path: Path, text: str) -> Path:
    """``path`` written with ``text``, and old enough (mtime and ctime) to be kept."""
    path.write_text(text, encoding="utf-8")
    time.sleep(0.05)
    return path


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test count as settled at once (the 2 s window is tested on its own)."""
    monkeypatch.setattr(flow_cache, "RACY_NS", 0)


def _entries(runs: Path) -> dict:
    return json.loads((runs / FLOW_CACHE).read_text(encoding="utf-8"))["flows"]


def test_a_parsed_flow_is_kept_and_read_back_the_same(tmp_path: Path, no_racy_window: None) -> None:
    flow = _aged(tmp_path / "f.py", FLOW)
    runs = tmp_path / "runs"
    cache = FlowCache(runs)
    first = cache.read(flow)
    cache.save()
    assert list(_entries(runs)) == [str(flow.resolve())]

    again = FlowCache(runs).read(flow)  # a new process: from the file, not parsed
    fresh = read_flow(flow)
    assert again.code_hash() == fresh.code_hash() == first.code_hash()
    assert again.parameters_index == fresh.parameters_index == 0
    assert again.parameters_defaults() == {"alpha": 1}
    assert again.stamp == fresh.stamp and again.path == fresh.path


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(tmp_path: Path, no_racy_window: None) -> None:
    flow = _aged(tmp_path / "f.py", FLOW)
    runs = tmp_path / "runs"
    cache = FlowCache(runs)
    cache.read(flow)
    cache.save()
    st = flow.stat()
    edited = FLOW.replace("* 2", "* 3")
    assert len(edited) == len(FLOW)
    flow.write_text(edited, encoding="utf-8")
    os.utime(flow, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before; ctime moved
    got = FlowCache(runs).read(flow)
    assert got.code_hash() == read_flow(flow).code_hash()
    assert "* 3" in got.code_sources[1]


def test_a_file_changed_within_the_racy_window_is_not_kept(tmp_path: Path) -> None:
    flow = tmp_path / "f.py"
    flow.write_text(FLOW, encoding="utf-8")  # just now: its stamp cannot tell this edit from the next
    runs = tmp_path / "runs"
    cache = FlowCache(runs)
    cache.read(flow)
    cache.save()
    assert not (runs / FLOW_CACHE).exists()


def test_a_damaged_or_foreign_cache_only_costs_a_parse(tmp_path: Path, no_racy_window: None) -> None:
    flow = _aged(tmp_path / "f.py", FLOW)
    runs = tmp_path / "runs"
    (runs / FLOW_CACHE).parent.mkdir(parents=True)
    (runs / FLOW_CACHE).write_text("{not json", encoding="utf-8")
    assert FlowCache(runs).read(flow).code_hash() == read_flow(flow).code_hash()

    st = flow.stat()
    sig = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    lie = {"sig": sig, "parameters_index": 0, "notebook": {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                           "cells": []}}
    doc = {"schema": 1, "ductaflow": "0.0.0-other", "flows": {str(flow.resolve()): lie}}
    (runs / FLOW_CACHE).write_text(json.dumps(doc), encoding="utf-8")
    assert FlowCache(runs).read(flow).code_hash() == read_flow(flow).code_hash()  # another version's: ignored


def test_a_flow_that_does_not_parse_is_refused_and_never_kept(tmp_path: Path, no_racy_window: None) -> None:
    flow = _aged(tmp_path / "f.py", FLOW + "\n# %%\ndef broken(:\n")
    runs = tmp_path / "runs"
    cache = FlowCache(runs)
    with pytest.raises(FlowFileError):
        cache.read(flow)
    cache.save()
    assert not (runs / FLOW_CACHE).exists()


def test_entries_of_deleted_flows_are_dropped(tmp_path: Path, no_racy_window: None) -> None:
    a, b = _aged(tmp_path / "a.py", FLOW), _aged(tmp_path / "b.py", FLOW)
    runs = tmp_path / "runs"
    cache = FlowCache(runs)
    cache.read(a)
    cache.read(b)
    cache.save()
    b.unlink()
    c = _aged(tmp_path / "c.py", FLOW)
    cache = FlowCache(runs)
    cache.read(c)
    cache.save()
    assert sorted(Path(k).name for k in _entries(runs)) == ["a.py", "c.py"]
