"""``ductaflow init`` without a kernel: the files it writes, its refusal of a non-empty directory,
``--force`` adding only what is missing (nothing existing changes) and the command's messages.
The scaffolded project's conductor is run for real in tests/test_init_project.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ductaflow import DuctaflowError, load_config_file
from ductaflow.cli import main
from ductaflow.core.config import find_project_root
from ductaflow.kernels.options import kernel_options
from ductaflow.scaffold import init_project, template_files

EXPECTED = {
    ".gitignore", "README.md", "pyproject.toml", "conductor.py",
    "flows/make_data.py", "flows/summarise.py", "builds/pipeline.py",
    "config/flows/make_data.json", "config/flows/summarise.json", "config/builds/pipeline.json",
    "config/scenarios.csv",
}  # fmt: skip


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative, "/" separated) -> the sha256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_init_writes_a_complete_project_into_a_directory_it_creates(tmp_path: Path) -> None:
    root = tmp_path / "new" / "My Model"
    result = init_project(root)
    assert result.root == root.resolve()
    assert {p.as_posix() for p in result.created} == EXPECTED and result.skipped == ()
    assert set(_files(root)) == EXPECTED == {p.as_posix() for p, _ in template_files()}
    for rel in EXPECTED:
        text = (root / rel).read_text(encoding="utf-8")
        assert "{{" not in text and ".tmpl" not in text, rel
        if rel.endswith(".py"):
            compile(text, rel, "exec")  # the flows, the build and the conductor are valid Python

    assert 'name = "my-model"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    assert kernel_options(root).preload == ("pandas", "ductaflow.run.execute")  # read as ductaflow reads it
    assert find_project_root(root / "flows" / "make_data.py") == root.resolve()
    assert "runs/" in (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    for name in ("make_data", "summarise"):
        assert load_config_file(root / "config" / "flows" / f"{name}.json")
    build = load_config_file(root / "config" / "builds" / "pipeline.json")
    header, *rows = (root / "config" / "scenarios.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and header.startswith("scenario_name,")
    assert set(header.split(",")[1:]) <= set(build), "every scenario column is a key of the build's config"


def test_init_refuses_a_non_empty_directory_and_a_file_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "busy"
    root.mkdir()
    (root / "notes.txt").write_text("mine\n")
    with pytest.raises(DuctaflowError) as info:
        init_project(root)
    assert info.value.exit_code == 2
    assert str(root) in str(info.value) and "--force" in str(info.value)
    assert _files(root) == {"notes.txt": hashlib.sha256(b"mine\n").hexdigest()}

    with pytest.raises(DuctaflowError, match="not a directory"):
        init_project(root / "notes.txt", force=True)
    assert init_project(tmp_path / "empty_ok").created  # an empty (here: new) directory needs no --force
    (tmp_path / "empty").mkdir()
    assert len(init_project(tmp_path / "empty").created) == len(EXPECTED)


def test_force_adds_only_missing_files_and_leaves_every_existing_one_byte_identical(tmp_path: Path) -> None:
    root = tmp_path / "existing"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "make_data.py").write_bytes(b"# my own flow\r\n")
    (root / "conductor.py").write_bytes(b"\x00\xffnot even text")
    (root / "builds").write_text("a file where the template has a folder\n")
    (root / "runs" / "old").mkdir(parents=True)
    (root / "runs" / "old" / "result.csv").write_text("a,b\n1,2\n")
    (root / "README.md").symlink_to(tmp_path / "nowhere.md")  # a dangling link is not written through
    before = _files(root)

    result = init_project(root, force=True)
    skipped = {p.as_posix() for p in result.skipped}
    assert skipped == {"flows/make_data.py", "conductor.py", "builds/pipeline.py", "README.md"}
    assert {p.as_posix() for p in result.created} == EXPECTED - skipped
    after = _files(root)
    assert {k: after[k] for k in before} == before, "an existing file changed"
    assert set(after) == set(before) | (EXPECTED - skipped)
    assert not (tmp_path / "nowhere.md").exists()

    again = init_project(root, force=True)
    assert again.created == () and len(again.skipped) == len(EXPECTED)
    assert _files(root) == after


def test_cli_init_prints_what_it_created_and_the_next_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "a project"
    main(["init", str(root)])
    out = capsys.readouterr().out
    assert f"created {len(EXPECTED)} file(s) in {root}" in out
    assert "  flows/make_data.py\n" in out and "  .gitignore\n" in out
    assert f"cd '{root}'" in out and "python conductor.py" in out
    assert "ductaflow conduct config/scenarios.csv --build builds/pipeline.py" in out

    with pytest.raises(SystemExit) as info:
        main(["init", str(root)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ductaflow: error: ") and str(root) in err

    (root / "config" / "scenarios.csv").unlink()
    main(["init", str(root), "--force"])
    out = capsys.readouterr().out
    assert "created 1 file(s)" in out and "  config/scenarios.csv\n" in out
    assert f"skipped {len(EXPECTED) - 1} file(s) whose path is taken" in out

    # The printed second command checks out: every scenario column is a parameter the build knows.
    csv, build = root / "config" / "scenarios.csv", root / "builds" / "pipeline.py"
    main(["conduct", str(csv), "--build", str(build), "--dry-run"])
    assert "dry run OK: 3 scenario(s) would run" in capsys.readouterr().out
    assert not (root / "runs").exists()


def test_a_place_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DuctaflowError, match="cannot use .* as the project directory: File name too long"):
        init_project(tmp_path / ("x" * 300))  # longer than any file system allows a name
    assert list(tmp_path.iterdir()) == []
