"""Provenance: the git state and environment collected for a run, stored, read back and shown.

Real git repositories in tmp_path, real distribution metadata, real files; no kernel.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from flowkit import git

from ductaflow.cli import cli, main
from ductaflow.core.lights import Status
from ductaflow.core.provenance import NOT_A_CHECKOUT, GitState, Provenance, collect, environment, git_state
from ductaflow.report.provenance import row_fields, section_fields, warnings
from ductaflow.store.envs import env_path, read_environment, write_environment
from ductaflow.store.layout import RUNS_MARKER
from ductaflow.store.ledger import append_run
from ductaflow.store.ledger import read as read_ledger
from ductaflow.store.records import read_status, write_status
from ductaflow.store.result import FlowResult

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one commit of one tracked file, on branch ``main``."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "model.py").write_text("rate = 1\n")
    git(root, "add", "model.py")
    git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_a_clean_checkout_records_commit_and_branch(repo: Path) -> None:
    state, note = git_state(repo)
    assert note is None and state == GitState(git(repo, "rev-parse", "HEAD"), "main", False, None)
    assert state.short == state.commit[:7]


@needs_git
def test_the_dirty_flag_flips_when_a_tracked_file_changes_and_back(repo: Path) -> None:
    (repo / "model.py").write_text("rate = 2\n")
    first, _ = git_state(repo)
    assert first is not None and first.dirty and first.diff_hash and first.short.endswith("*")
    (repo / "model.py").write_text("rate = 3\n")
    second, _ = git_state(repo)
    assert second is not None and second.dirty and second.diff_hash != first.diff_hash  # another change, another hash
    git(repo, "add", "model.py")  # staged changes are uncommitted too
    staged, _ = git_state(repo)
    assert staged is not None and staged.dirty and staged.diff_hash == second.diff_hash
    git(repo, "checkout", "-q", "HEAD", "--", "model.py")
    clean, _ = git_state(repo)
    assert clean is not None and not clean.dirty and clean.diff_hash is None


@needs_git
def test_untracked_files_do_not_make_the_tree_dirty(repo: Path) -> None:
    (repo / "scratch.csv").write_text("a\n1\n")
    state, _ = git_state(repo)
    assert state is not None and not state.dirty


@needs_git
def test_detached_head_and_a_repository_without_commits(repo: Path, tmp_path: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    state, _ = git_state(repo)
    assert state is not None and state.branch is None and state.commit
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    state, note = git_state(empty)
    assert note is None and state is not None and state.commit is None and state.short == "(no commit)"


@needs_git
def test_no_checkout_and_no_git_are_recorded_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_state(plain) == (None, NOT_A_CHECKOUT)
    prov = collect(plain)
    assert prov.git is None and prov.git_note == NOT_A_CHECKOUT and prov.commit_text == "no git"
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    state, note = git_state(plain)
    assert state is None and note == "git is not installed"


def test_the_environment_is_this_process_s_distributions_and_is_stable() -> None:
    env = environment()
    assert env is not None and env.distributions == tuple(sorted(env.distributions))
    names = {d.split("==")[0] for d in env.distributions}
    assert {"ductaflow", "papermill", "pandas"} <= names
    assert environment() is env  # cached while sys.path folders are unchanged
    assert len(env.hash) == 16 and env.executable == sys.executable


def test_installing_a_distribution_changes_the_environment_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = environment()
    info = site / "fresh_pkg-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: Fresh_Pkg\nVersion: 1.2\n")
    after = environment()
    assert before is not None and after is not None and after.hash != before.hash
    assert "fresh-pkg==1.2" in after.distributions  # PEP 503 name


def _prov(commit: str = "a" * 40, dirty: bool = False, env: str = "e1e1e1e1e1e1e1e1") -> Provenance:
    git = GitState(commit, "main", dirty, "d" * 16 if dirty else None)
    return Provenance("3.11.7", "CPython", "Linux", "/venv/bin/python", "0.1.0", env, "host", "me", git)


def _result(folder: Path, prov: Provenance | None, flow: str = "f", started: str = "2026-01-01T00:00:00") -> FlowResult:
    return FlowResult(flow, folder / f"{flow}.py", folder, Status.GREEN, "finished", started=started,
                      instance=folder.name, provenance=prov)  # fmt: skip


def test_provenance_round_trips_through_the_status_record(tmp_path: Path) -> None:
    result = _result(tmp_path, _prov(dirty=True))
    write_status(result)
    back = read_status(result.status_path)
    assert back is not None and back.provenance == result.provenance
    doc = json.loads(result.status_path.read_text())
    assert doc["schema"] == 8 and doc["provenance"]["git"]["dirty"] is True


def test_older_and_malformed_records_read_with_no_provenance(tmp_path: Path) -> None:
    result = _result(tmp_path, _prov())
    write_status(result)
    doc = json.loads(result.status_path.read_text())
    for value in (None, "text", {"git": "not a dict"}, {"python_version": "3"}):
        doc["provenance"] = value
        result.status_path.write_text(json.dumps(doc))
        back = read_status(result.status_path)
        assert back is not None and back.provenance is None
    del doc["provenance"]
    doc["schema"] = 5
    result.status_path.write_text(json.dumps(doc))
    assert read_status(result.status_path).provenance is None  # type: ignore[union-attr]


def test_an_environment_file_is_written_once_and_read_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = environment()
    assert env is not None
    path = write_environment(tmp_path, env)
    assert path == env_path(tmp_path, env.hash) and path.parent == tmp_path / RUNS_MARKER / "envs"
    stamp = path.stat().st_mtime_ns
    write_environment(tmp_path, env)
    assert path.stat().st_mtime_ns == stamp  # never rewritten
    stored = read_environment(tmp_path, env.hash)
    assert stored is not None and stored.distributions == env.distributions
    assert read_environment(tmp_path, "0" * 16) is None
    path.write_text("{broken")
    with caplog.at_level(logging.WARNING):
        assert read_environment(tmp_path, env.hash) is None
    assert str(path) in caplog.text
    with pytest.raises(ValueError):
        env_path(tmp_path, "../../etc/passwd")


def test_the_ledger_gets_the_run_s_provenance(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / RUNS_MARKER).mkdir(parents=True)
    inst = runs / "f" / "i"
    append_run({"runs_root": str(runs)}, _result(inst, _prov(dirty=True)), event="run")
    append_run({"runs_root": str(runs)}, _result(inst, None, started="2026-01-02T00:00:00"), event="run")
    df = read_ledger(runs)
    first, second = df.iloc[0], df.iloc[1]
    assert first["git_commit"] == "a" * 40 and bool(first["git_dirty"]) and first["git_diff_hash"] == "d" * 16
    assert first["env_hash"] == "e1e1e1e1e1e1e1e1" and first["user"] == "me" and first["git_branch"] == "main"
    assert first["python_implementation"] == "CPython" and first["host"] == "host"
    assert pd.isna(second["git_commit"]) and pd.isna(second["env_hash"])  # no provenance: nothing made up


def _row(commit: str, dirty: bool = False, env: str = "e1e1e1e1e1e1e1e1") -> dict[str, object]:
    return row_fields([_result(Path("/r/x"), _prov(commit, dirty, env))])


def test_report_rows_show_the_short_commit_and_a_star_when_dirty() -> None:
    row = _row("b" * 40, dirty=True)
    assert row["commit"] == "bbbbbbb*" and "uncommitted" in row["commit_title"] and row["env"] == "e1e1e1e1e1e1e1e1"
    assert row_fields([None]) == {"commit": "", "commit_title": "", "code": "", "code_label": "", "env": ""}


def test_the_report_warns_only_when_code_or_environment_is_mixed() -> None:
    same = [_row("a" * 40), _row("a" * 40), {"code": "", "env": ""}]  # a row with no record does not count
    fields = section_fields(same)
    assert not fields["mixed_code"] and not fields["mixed_env"]
    assert warnings([{"build": "b", **fields}]) == []
    mixed = [_row("a" * 40), _row("a" * 40, dirty=True), _row("a" * 40, env="f" * 16)]
    fields = section_fields(mixed)
    assert fields["mixed_code"] and fields["mixed_env"]
    (line,) = warnings([{"build": "demand", **fields}])
    assert line.startswith("demand: ") and "2 different code states" in line and "aaaaaaa* (diff dddddd) ×1" in line
    assert "2 different environments" in line and "e1e1e1e1 ×2" in line


def test_provenance_command_prints_code_and_environment(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / RUNS_MARKER).mkdir(parents=True)
    env = environment()
    assert env is not None
    inst = runs / "f" / "i"
    inst.mkdir(parents=True)
    write_environment(runs, env)
    write_status(_result(inst, _prov(dirty=True, env=env.hash)))
    out = CliRunner().invoke(cli, ["provenance", str(inst)])
    assert out.exit_code == 0, out.output
    assert f"commit {'a' * 40} on main, uncommitted changes to tracked files (diff {'d' * 16})" in out.output
    assert f"env       {env.hash}: {len(env.distributions)} distributions" in out.output
    assert "the same as this environment" in out.output
    doc = json.loads(CliRunner().invoke(cli, ["provenance", str(inst), "--json"]).output)
    assert doc[0]["provenance"]["git"]["commit"] == "a" * 40 and doc[0]["distributions"] == list(env.distributions)


def test_provenance_command_says_what_changed_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    env = environment()
    assert env is not None
    kept = [d for d in env.distributions if not d.startswith(("ductaflow==", "pandas=="))]
    then = tuple(sorted([*kept, "ductaflow==0.0.1", "gone-pkg==1.0"]))
    old = replace(env, hash="0123456789abcdef", distributions=then)
    write_environment(runs, old)
    inst = runs / "f" / "i"
    inst.mkdir(parents=True)
    write_status(_result(inst, _prov(env=old.hash)))
    out = CliRunner().invoke(cli, ["provenance", str(inst), "--packages"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if "differs from this environment" in ln)
    pandas = next(d for d in env.distributions if d.startswith("pandas=="))
    want = f"differs from this environment: ductaflow 0.0.1 -> 0.1.0, +pandas {pandas[8:]}, -gone-pkg 1.0"
    assert line.endswith(want)
    assert "gone-pkg==1.0" in out.output  # --packages lists the stored list
    with pytest.raises(SystemExit) as stop:
        main(["provenance", str(tmp_path / "nowhere")])
    assert stop.value.code == 2 and "instance directory not found" in capsys.readouterr().err


def test_entry_points_are_kept_for_the_next_process_and_a_package_added_to_a_path_folder_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hooks' entry-point scan is kept like the distribution list: read back while no
    ``sys.path`` folder changed, scanned again when one did (an install adds a .dist-info)."""
    from ductaflow.core.provenance import entry_points_in

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    group = "ductaflow.test_group"
    assert entry_points_in(group) == ()
    [kept] = (tmp_path / "cache" / "ductaflow" / "environments").glob("*.json")
    kept.write_text(json.dumps([["kept.module:Name", "kept"]]))  # what the next process finds is what it uses
    assert entry_points_in(group) == (("kept.module:Name", "kept"),)

    dist = site / "extra_pkg-1.0.dist-info"  # an install: the folder on sys.path changes
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nnew = extra.module:Hook\n")
    assert entry_points_in(group) == (("extra.module:Hook", "new"),)


def test_the_distribution_list_is_kept_for_the_next_process_and_a_changed_path_lists_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ductaflow.core import provenance

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(provenance, "_env_cache", None)  # as a new process starts
    first = environment()
    assert first is not None
    [kept] = (tmp_path / "cache" / "ductaflow" / "environments").glob("*.json")
    assert json.loads(kept.read_text()) == list(first.distributions)

    kept.write_text(json.dumps(["only-this==1.0"]))  # what the next process finds is what it uses
    monkeypatch.setattr(provenance, "_env_cache", None)
    again = environment()
    assert again is not None and again.distributions == ("only-this==1.0",) and again.hash != first.hash

    extra = tmp_path / "site"
    extra.mkdir()
    monkeypatch.syspath_prepend(str(extra))  # another sys.path: another key, listed afresh
    monkeypatch.setattr(provenance, "_env_cache", None)
    fresh = environment()
    assert fresh is not None and fresh.distributions == first.distributions
    assert len(list((tmp_path / "cache" / "ductaflow" / "environments").glob("*.json"))) == 2


def test_a_folder_on_sys_path_that_gains_other_files_keeps_the_kept_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project folder on ``sys.path`` (a script's, a conductor's) gets ``runs/`` and outputs:
    that is no install, so the next process reads the kept list instead of listing again."""
    from ductaflow.core import provenance

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setattr(provenance, "_env_cache", None)
    monkeypatch.setattr(provenance, "_listed", {})
    first = environment()
    assert first is not None
    [kept] = (tmp_path / "cache" / "ductaflow" / "environments").glob("*.json")
    kept.write_text(json.dumps(["only-this==1.0"]))  # what the next process finds is what it uses
    (project / "runs" / "flow" / "a").mkdir(parents=True)
    (project / "out.csv").write_text("x\n")
    monkeypatch.setattr(provenance, "_env_cache", None)  # as a new process starts
    monkeypatch.setattr(provenance, "_listed", {})
    again = environment()
    assert again is not None and again.distributions == ("only-this==1.0",)
    assert list((tmp_path / "cache" / "ductaflow" / "environments").glob("*.json")) == [kept]


def test_the_cache_of_lists_is_pruned_to_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ductaflow.core import provenance

    monkeypatch.setattr(provenance, "KEEP_LISTS", 3)
    folder = tmp_path / "environments"
    folder.mkdir()
    for i in range(6):
        (folder / f"old{i}.json").write_text("[]")
        os.utime(folder / f"old{i}.json", (1_000_000 + i, 1_000_000 + i))
    provenance._keep(folder / "new.json", ("a==1",))  # 7 > 2 * 3: pruned to the newest 3
    assert sorted(p.name for p in folder.iterdir()) == ["new.json", "old4.json", "old5.json"]
    provenance._keep(folder / "newer.json", ("a==1",))  # 4: not yet over twice the limit
    assert len(list(folder.iterdir())) == 4
