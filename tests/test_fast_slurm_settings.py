"""``[tool.ductaflow.cluster]``: reading and checking the SLURM settings, the arguments they give
dask-jobqueue, the CLI's --cluster/--worker-wait checks and the missing-extra hint. No cluster starts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ductaflow.cli import cli
from ductaflow.conductor.executors import NAMES, make_backend
from ductaflow.conductor.executors.slurm import (
    KEYS,
    TABLE,
    JobOf,
    SlurmSettings,
    read_settings,
    slurm_settings,
    whole_jobs,
)
from ductaflow.errors import ConfigError

FULL = """\
[tool.ductaflow]
preload = ["pandas"]

[tool.ductaflow.cluster]
cores = 8
processes = 2
memory = "32GB"
walltime = "2-00:00:00"
queue = "compute"
account = "transport"
job_name = "demand"
job_extra_directives = ["--qos=long", "--gres=gpu:1"]
job_script_prologue = ["module load python/3.11", "cd /shared/project"]
interface = "ib0"
python = "/shared/project/.venv/bin/python"
local_directory = "$TMPDIR"
log_directory = "slurm-logs"
minimum_jobs = 1
maximum_jobs = 20
dashboard_address = ":0"
"""


def _project(tmp_path: Path, text: str | None) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    if text is not None:
        (root / "pyproject.toml").write_text(text, encoding="utf-8")
    return root


def _error(tmp_path: Path, table: str) -> str:
    root = _project(tmp_path, f"[tool.ductaflow.cluster]\n{textwrap.dedent(table)}")
    with pytest.raises(ConfigError) as info:
        read_settings(root)
    message = str(info.value)
    assert message.startswith(str(root / "pyproject.toml")), message
    return message


def test_defaults_without_a_file_or_a_table(tmp_path: Path) -> None:
    assert read_settings(_project(tmp_path, None)) == SlurmSettings()
    root = tmp_path / "other"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.ductaflow]\npreload = []\n")
    settings = read_settings(root)
    assert settings == SlurmSettings() and settings.source == str(root / "pyproject.toml")
    assert (settings.cores, settings.processes, settings.memory, settings.walltime) == (1, 1, "4GB", "01:00:00")
    assert (settings.minimum_jobs, settings.maximum_jobs, settings.threads_per_job) == (0, 10, 1)
    kwargs = settings.cluster_kwargs()
    assert kwargs["scheduler_options"] == {"port": 0, "dashboard_address": ":8787"}  # a port the OS gives
    assert kwargs["job_name"] == "ductaflow" and kwargs["job_extra_directives"] == []
    for unset in ("queue", "account", "interface", "python", "local_directory", "log_directory"):
        assert unset not in kwargs, f"{unset}: left to dask-jobqueue's own default"
    assert settings.adapt_kwargs() == {"minimum_jobs": 0, "maximum_jobs": 10, "target_duration": "100ms"}


def test_every_key_is_read_and_passed_on(tmp_path: Path) -> None:
    root = _project(tmp_path, FULL)
    s = read_settings(root)
    assert s == SlurmSettings(
        cores=8, processes=2, memory="32GB", walltime="2-00:00:00", queue="compute", account="transport",
        job_name="demand", job_extra_directives=("--qos=long", "--gres=gpu:1"),
        job_script_prologue=("module load python/3.11", "cd /shared/project"), interface="ib0",
        python="/shared/project/.venv/bin/python", local_directory="$TMPDIR",
        log_directory=str(root / "slurm-logs"),  # relative: from the project root
        minimum_jobs=1, maximum_jobs=20, dashboard_address=":0",
    )  # fmt: skip
    assert s.threads_per_job == 8
    kwargs = s.cluster_kwargs()
    assert kwargs == {
        "cores": 8, "processes": 2, "memory": "32GB", "walltime": "2-00:00:00", "job_name": "demand",
        "job_extra_directives": ["--qos=long", "--gres=gpu:1"],
        "job_script_prologue": ["module load python/3.11", "cd /shared/project"],
        "scheduler_options": {"port": 0, "dashboard_address": ":0"}, "queue": "compute", "account": "transport",
        "interface": "ib0", "python": "/shared/project/.venv/bin/python", "local_directory": "$TMPDIR",
        "log_directory": str(root / "slurm-logs"),
    }  # fmt: skip
    assert set(KEYS) == {f.name for f in dataclasses.fields(SlurmSettings)} - {"source"}


def test_an_absolute_log_directory_is_kept(tmp_path: Path) -> None:
    assert slurm_settings({"log_directory": "/scratch/logs"}, "x", tmp_path).log_directory == "/scratch/logs"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('cores = "4"', "tool.ductaflow.cluster.cores must be a whole number >= 1, got '4'"),
        ("cores = true", "cores must be a whole number >= 1, got True"),
        ("cores = 0", "cores must be a whole number >= 1, got 0"),
        ("maximum_jobs = 2.5", "maximum_jobs must be a whole number >= 1, got 2.5"),
        ("minimum_jobs = -1", "minimum_jobs must be a whole number >= 0, got -1"),
        ('memory = "lots"', 'memory must be an amount with its unit, such as "16GB"'),
        ("memory = 16", 'memory must be an amount with its unit, such as "16GB"'),
        ('walltime = "4h"', 'walltime must be a SLURM time limit such as "04:00:00"'),
        ('queue = ""', "queue must be a non-empty string, got ''"),
        ('job_extra_directives = "--qos=long"', "job_extra_directives must be a list of non-empty strings"),
        ('job_extra_directives = ["#SBATCH --qos=long"]', "options without '#SBATCH' (dask-jobqueue adds it)"),
        ("job_script_prologue = [1]", "job_script_prologue must be a list of non-empty strings, got [1]"),
        ("cores = 6\nprocesses = 4", "cores (6) must be a multiple of processes (4)"),
        ("minimum_jobs = 3\nmaximum_jobs = 2", "minimum_jobs (3) is above maximum_jobs (2)"),
    ],
)
def test_a_wrong_value_names_the_file_and_the_key(tmp_path: Path, table: str, expected: str) -> None:
    assert expected in _error(tmp_path, table)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("walltme", "(did you mean 'walltime'?)"), ("partition", "(did you mean 'queue'?)"),
     ("mem", "(did you mean 'memory'?)"), ("job_extra", "(did you mean 'job_extra_directives'?)"),
     ("maximum_job", "(did you mean 'maximum_jobs' or 'minimum_jobs'?)")],
)  # fmt: skip
def test_an_unknown_key_is_refused_with_the_nearest_one(tmp_path: Path, key: str, hint: str) -> None:
    message = _error(tmp_path, f'{key} = "1"')
    assert f"[{TABLE}]: unknown key '{key}' {hint}" in message, message
    assert "the keys are cores, processes, memory" in message


def test_an_unknown_key_far_from_any_gets_the_list_only(tmp_path: Path) -> None:
    message = _error(tmp_path, "zzz = 1")
    assert "unknown key 'zzz'; the keys are cores," in message


def test_a_table_that_is_not_a_table_or_toml_that_is_not_toml(tmp_path: Path) -> None:
    root = _project(tmp_path, "[tool.ductaflow]\ncluster = 3\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[tool.ductaflow.cluster\] must be a table"):
        read_settings(root)
    (root / "pyproject.toml").write_text("[tool.ductaflow.cluster\ncores = 1\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml: cannot read \[tool.ductaflow.cluster\]"):
        read_settings(root)


def test_make_backend_checks_the_table_before_starting_anything(tmp_path: Path) -> None:
    assert "slurm" in NAMES
    root = _project(tmp_path, "[tool.ductaflow.cluster]\npartition = 'gpu'\n")
    with pytest.raises(ConfigError, match="did you mean 'queue'"):
        make_backend("slurm", None, project_root=root)


def test_workers_are_grouped_by_their_job() -> None:
    assert JobOf(1).job("SLURMCluster-3") == "SLURMCluster-3"
    assert JobOf(4).job("SLURMCluster-3-1") == "SLURMCluster-3"
    assert JobOf(2)(dataclasses.make_dataclass("W", [("name", str)])("SLURMCluster-12-0")) == "SLURMCluster-12"


def test_scaling_down_closes_whole_idle_jobs_only_up_to_the_excess() -> None:
    idle = ["C-1-0", "C-1-1", "C-4-0", "C-4-1"]
    assert whole_jobs(idle, 4, JobOf(2)) == idle
    assert whole_jobs(idle, 3, JobOf(2)) == ["C-1-0", "C-1-1"]  # never half a job
    assert whole_jobs(idle, 1, JobOf(2)) == []
    assert whole_jobs(["C-1", "C-2"], 1, JobOf(1)) == ["C-1"]
    assert whole_jobs([], 5, JobOf(1)) == []


def test_without_dask_jobqueue_the_error_names_the_extra(tmp_path: Path) -> None:
    """A ``dask_jobqueue`` that cannot be imported (a stand-in first on the path) gives the install command."""
    shadow = tmp_path / "shadow" / "dask_jobqueue"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named dask_jobqueue')\n")
    root = _project(tmp_path, None)
    code = (
        "from ductaflow.conductor.executors import make_backend\n"
        "from ductaflow.errors import MissingExtra\n"
        "try:\n"
        f"    make_backend('slurm', None, project_root=__import__('pathlib').Path({str(root)!r}))\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "--cluster slurm needs the optional package 'dask_jobqueue': pip install 'ductaflow[jobqueue]'"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--executor", "dask"], "--cluster slurm starts its own Dask cluster; it cannot be combined with --executor"),
     (["--scheduler", "tcp://h:8786"], "it cannot be combined with --scheduler"),
     (["--worker-wait", "0"], "Invalid value for '--worker-wait'"),
     (["--cluster", "pbs"], "Invalid value for '--cluster'")],
)  # fmt: skip
def test_the_cli_refuses_cluster_with_another_executor(tmp_path: Path, args: list[str], expected: str) -> None:
    command = ["conduct", str(tmp_path / "s.csv"), "--build", str(tmp_path / "b.py"), "--cluster", "slurm", *args]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_the_docs_example_and_key_table_match_the_reader() -> None:
    """The docs' ``[tool.ductaflow.cluster]`` example (docs/scaling-out.md) is valid, and its table lists every key."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "scaling-out.md").read_text(encoding="utf-8")
    section = page[page.index("## SLURM: `--cluster slurm`") :]
    example = section[section.index("```toml\n") + len("```toml\n") :]
    example = example[: example.index("```")]
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    settings = slurm_settings(tomllib.loads(example)["tool"]["ductaflow"]["cluster"], "docs/scaling-out.md")
    assert (settings.cores, settings.maximum_jobs, settings.queue) == (8, 10, "compute")
    table = section[: section.index("Any other key is refused")]
    for key in KEYS:
        assert f"`{key}`" in table, f"docs/scaling-out.md's key table does not list {key}"
