"""``ductaflow sync-offline``: upload the offline W&B runs of a runs tree, one by one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import click

from ductaflow.cli.app import cli
from ductaflow.errors import DuctaflowError, MissingExtra

#: How long one ``wandb sync`` may take before it counts as failed.
_SYNC_TIMEOUT_S = 600


@cli.command("sync-offline")
@click.argument("runs_dir", required=False, default="runs", type=click.Path(path_type=Path, file_okay=False))
@click.option("--dry-run", is_flag=True, help="List the offline runs; upload nothing.")
def sync_offline(runs_dir: Path, dry_run: bool) -> None:
    """Find every offline Weights & Biases run under RUNS_DIR (default: runs), made with the wandb
    tracker and tracker_offline = true, and upload each with `wandb sync`, saying per run whether
    it worked. A synced run keeps its id, so the status records still lead to it. Exit 1 when
    any upload failed."""
    if not runs_dir.is_dir():
        raise DuctaflowError(f"runs folder not found: {runs_dir}")
    from ductaflow.trackers.wandb import offline_runs  # deferred: each command imports only what it runs

    found = offline_runs(runs_dir)
    if not found:
        click.echo(f"no offline W&B run under {runs_dir}")
        return
    for folder in found:
        click.echo(f"{folder}")
    if dry_run:
        click.echo(f"{len(found)} offline run(s); --dry-run: nothing uploaded")
        return
    if importlib.util.find_spec("wandb") is None:
        raise MissingExtra("ductaflow sync-offline", "wandb", "wandb")
    failed = 0
    for folder in found:
        try:
            proc = subprocess.run([sys.executable, "-m", "wandb", "sync", str(folder)], capture_output=True,
                                  text=True, timeout=_SYNC_TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
            ok, why = proc.returncode == 0, (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        except subprocess.TimeoutExpired:
            ok, why = False, [f"timed out after {_SYNC_TIMEOUT_S} s"]
        failed += not ok
        click.echo(f"{'synced' if ok else 'FAILED'}  {folder}" + ("" if ok else f"  ({why[0]})"))
    click.echo(f"{len(found) - failed} of {len(found)} run(s) synced")
    if failed:
        sys.exit(1)
