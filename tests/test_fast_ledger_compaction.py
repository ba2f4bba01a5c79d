"""The ledger merges its small files by itself and stays exact: real files, real DuckDB, no kernel.

Writers in several processes append while readers read; merges run inside those appends; a
writer is killed at random moments; a merge's half-done states are built with the merge's own
first step. In every case each record written is read exactly once.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ductaflow.report.query import run_query
from ductaflow.store import ledger
from ductaflow.store.ledger_compact import MERGE_AT, write_merged
from ductaflow.store.ledger_files import (
    COLUMNS,
    Duck,
    generation,
    ledger_dir,
    level,
    merged_name,
    parquet_files,
    read_table,
)

# A writer process: appends COUNT records one by one, each with a known run_id, and after each
# append returns records how many are durable in PROGRESS (written, then renamed).
_WRITER = """
import os, sys
from pathlib import Path
from ductaflow.store import ledger
root, name, count, progress = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
for i in range(count):
    ledger.append(root, [{"run_id": f"{name}-{i:06d}", "kind": "flow", "event": "run", "flow": name}])
    progress.with_suffix(".tmp").write_text(str(i + 1))
    os.replace(progress.with_suffix(".tmp"), progress)
"""


# A merger process: says it is ready, waits for GO, then merges ("auto": only full levels, or all).
_MERGER = """
import sys, time
from pathlib import Path
from ductaflow.store import ledger, ledger_compact
root, ready, go, how = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
ready.touch()
while not go.exists():
    time.sleep(0.001)
if how == "auto":
    ledger_compact.compact_if_due(ledger.ledger_dir(root))
else:
    ledger.compact(root)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts; any still running at its end (a failed test) are killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _writer(
    children: list[subprocess.Popen[bytes]], root: Path, name: str, count: int, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    progress = tmp_path / f"{name}.progress"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), name, str(count), str(progress)])
    children.append(proc)
    return proc, progress


def _done(progress: Path) -> int:
    try:
        return int(progress.read_text())
    except FileNotFoundError:
        return 0


def _ids(root: Path) -> list[str]:
    """The run ids a reader sees, duplicates kept (``read`` would drop them)."""
    table = read_table(root)
    return [] if table is None else table.column("run_id").to_pylist()


def _append(root: Path, name: str, n: int) -> list[str]:
    ids = [f"{name}-{i:06d}" for i in range(n)]
    for run_id in ids:
        ledger.append(root, [{"run_id": run_id, "kind": "flow", "event": "run", "flow": name, "duration": 1.0}])
    return ids


def _levels(root: Path) -> list[int]:
    return sorted(level(p) for p in parquet_files(ledger_dir(root)))


def test_small_files_merge_once_merge_at_have_gathered(tmp_path: Path) -> None:
    _append(tmp_path, "a", MERGE_AT)
    assert _levels(tmp_path) == [0] * MERGE_AT  # below the threshold: nothing merged
    _append(tmp_path, "b", 1)
    assert _levels(tmp_path) == [1]  # the next append merged all MERGE_AT + 1 files
    assert len(_ids(tmp_path)) == MERGE_AT + 1
    _append(tmp_path, "c", MERGE_AT - 1)
    assert _levels(tmp_path) == [0] * (MERGE_AT - 1) + [1]  # counted from the last merge
    _append(tmp_path, "d", 1)
    assert _levels(tmp_path) == [1, 1]


def test_many_records_are_queried_once_each_from_few_files(tmp_path: Path) -> None:
    written = _append(tmp_path, "r", 6 * MERGE_AT + 5)
    ledger.append(tmp_path, [{"run_id": f"batch-{i}", "kind": "flow"} for i in range(7)])  # several in one file
    written += [f"batch-{i}" for i in range(7)]
    assert len(parquet_files(ledger_dir(tmp_path))) < 2 * MERGE_AT
    assert sorted(_ids(tmp_path)) == sorted(written)
    counts = run_query("select count(*) n, count(distinct run_id) d from runs", tmp_path)
    assert counts.values.tolist() == [[len(written), len(written)]]
    assert sorted(ledger.read(tmp_path).run_id) == sorted(written)


def test_merged_files_keep_the_ledger_columns_and_types(tmp_path: Path) -> None:
    _append(tmp_path, "t", MERGE_AT + 1)
    (merged,) = parquet_files(ledger_dir(tmp_path))
    single = ledger.append(tmp_path / "other", [{"kind": "flow", "duration": 1.0, "warning_count": 3}])
    assert single is not None
    assert pq.read_schema(merged).names == list(COLUMNS)
    assert pq.read_schema(merged).types == pq.read_schema(single).types
    df = ledger.read(tmp_path)
    assert str(df.duration.dtype) == "float64" and set(df.duration) == {1.0}


def _old_ledger(root: Path, merged: int, small: int) -> list[str]:
    """A ledger as an earlier ductaflow left it (no count, nothing merged by itself): ``merged``
    files named as ``compact`` named them, then ``small`` writer files; returns the run ids."""
    folder = ledger_dir(root)
    folder.mkdir(parents=True)
    ids = [f"old-{i}" for i in range(merged + small)]
    for i, run_id in enumerate(ids):
        path = ledger.append(root / "scratch" / run_id, [{"run_id": run_id, "kind": "flow"}])  # a ledger each
        assert path is not None
        os.replace(path, folder / (merged_name(1) if i < merged else path.name))
    return ids


def test_a_ledger_written_before_counting_is_merged_at_its_next_append(tmp_path: Path) -> None:
    """No ``.appends`` count (files of an earlier ductaflow): the first append merges, level by level."""
    old = _old_ledger(tmp_path, MERGE_AT, 40)
    ledger.append(tmp_path, [{"run_id": "new", "kind": "flow"}])
    # the 41 small files -> one of level 1, making 33 of level 1 -> one of level 2
    assert _levels(tmp_path) == [2]
    assert sorted(_ids(tmp_path)) == sorted([*old, "new"])


def test_merges_started_at_once_by_several_processes_merge_each_file_once(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    old = _old_ledger(tmp_path, 0, 3 * MERGE_AT)
    go = tmp_path / "go"
    for k, how in enumerate(("auto", "auto", "all", "auto", "all")):
        ready = tmp_path / f"ready{k}"
        children.append(subprocess.Popen([sys.executable, "-c", _MERGER, str(tmp_path), str(ready), str(go), how]))
    while not all((tmp_path / f"ready{k}").exists() for k in range(len(children))):
        time.sleep(0.01)
    go.touch()
    assert [proc.wait(60) for proc in children] == [0] * len(children)
    ids = _ids(tmp_path)
    assert sorted(ids) == sorted(old)
    assert len(parquet_files(ledger_dir(tmp_path))) <= 2


def test_a_merge_that_died_half_way_leaves_the_reader_exact(tmp_path: Path) -> None:
    written = _append(tmp_path, "h", 10)
    folder = ledger_dir(tmp_path)
    sources = parquet_files(folder)
    merged, held = write_merged(Duck(), folder, sources, 1)  # died right after its rename
    assert merged is not None and held == sources
    assert sorted(_ids(tmp_path)) == written  # the sources are still there, and skipped
    for path in held[:4]:  # died while deleting them
        path.unlink()
    assert sorted(_ids(tmp_path)) == written
    stray = folder / f".{merged_name(1)}.x1y2z3.tmp"  # another merge died before its rename
    stray.write_bytes(b"PAR1 half a file")
    assert sorted(_ids(tmp_path)) == written
    assert ledger.compact(tmp_path) == merged  # the next merge deletes what the dead one left
    assert parquet_files(folder) == [merged] and not stray.exists()
    assert sorted(_ids(tmp_path)) == written


def test_readers_during_merges_see_every_record_once(tmp_path: Path, children: list[subprocess.Popen[bytes]]) -> None:
    """Three writer processes append (and so merge) while two reader threads read: each read holds
    every record finished before it began, and no record twice."""
    per_writer = 5 * MERGE_AT
    writers = {f"w{k}": _writer(children, tmp_path, f"w{k}", per_writer, tmp_path) for k in range(3)}
    generations: set[str] = set()

    def reads() -> int:
        count = 0
        while count < 3 or any(proc.poll() is None for proc, _ in writers.values()):
            finished = {f"{name}-{i:06d}" for name, (_, progress) in writers.items() for i in range(_done(progress))}
            ids = _ids(tmp_path)
            generations.add(generation(ledger_dir(tmp_path)))
            assert len(ids) == len(set(ids)), "a record read twice"
            missed = finished - set(ids)
            assert not missed, f"{len(missed)} finished records missing from a read, e.g. {sorted(missed)[:3]}"
            count += 1
        return count

    with ThreadPoolExecutor(2) as pool:
        counts = [f.result() for f in [pool.submit(reads), pool.submit(reads)]]
    assert [proc.wait(60) for proc, _ in writers.values()] == [0, 0, 0]
    assert min(counts) >= 10 and len(generations) >= 5, (counts, len(generations))  # reads overlapped merges
    assert sorted(_ids(tmp_path)) == sorted(f"{name}-{i:06d}" for name in writers for i in range(per_writer))


def test_writers_in_several_processes_lose_nothing(tmp_path: Path, children: list[subprocess.Popen[bytes]]) -> None:
    writers = [_writer(children, tmp_path, f"p{k}", 2 * MERGE_AT + 7, tmp_path) for k in range(3)]
    assert [proc.wait(120) for proc, _ in writers] == [0, 0, 0]
    expected = sorted(f"p{k}-{i:06d}" for k in range(3) for i in range(2 * MERGE_AT + 7))
    assert sorted(_ids(tmp_path)) == expected
    assert run_query("select count(distinct run_id) n, count(*) c from runs", tmp_path).values.tolist() == [
        [len(expected), len(expected)]
    ]
    assert max(_levels(tmp_path)) >= 1 and len(_levels(tmp_path)) < 2 * MERGE_AT


def test_a_writer_killed_at_any_moment_loses_and_repeats_nothing(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    rng = random.Random(15)
    for round_ in range(3):
        proc, progress = _writer(children, tmp_path, f"k{round_}", 10**6, tmp_path)
        deadline = time.monotonic() + 30
        while _done(progress) < MERGE_AT and time.monotonic() < deadline:  # past start-up, merging
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait(30)
        done = _done(progress)
        ids = _ids(tmp_path)
        assert len(ids) == len(set(ids)), "a record read twice after a kill"
        mine = {i for i in ids if i.startswith(f"k{round_}-")}
        finished = {f"k{round_}-{i:06d}" for i in range(done)}
        assert finished <= mine <= finished | {f"k{round_}-{done:06d}"}, (done, len(mine))


def test_unreadable_files_are_left_in_place_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    written = _append(tmp_path, "u", 3)
    folder = ledger_dir(tmp_path)
    garbage = folder / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    half = parquet_files(folder)[0]
    lost = pq.read_table(half).column("run_id").to_pylist()
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        written += _append(tmp_path, "v", MERGE_AT)
    assert str(garbage) in caplog.text and str(half) in caplog.text
    small = {p.name for p in parquet_files(folder) if level(p) == 0}
    assert {garbage.name, half.name} <= small and len(small) < MERGE_AT  # the others were merged
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ductaflow"):
        assert sorted(_ids(tmp_path)) == sorted(set(written) - set(lost))
    assert str(garbage) in caplog.text and str(half) in caplog.text
