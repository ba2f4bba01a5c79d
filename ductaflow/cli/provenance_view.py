"""What ``ductaflow provenance`` prints: the records of an instance folder, their provenance as
recorded and their environment as stored, compared with this process's environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ductaflow.core.provenance import Provenance, environment
from ductaflow.errors import DuctaflowError
from ductaflow.store.envs import StoredEnvironment, read_environment
from ductaflow.store.layout import STATUS_SUFFIX, runs_root_of
from ductaflow.store.records import flow_records, read_status
from ductaflow.store.result import FlowResult

_PIN = "=="


def show(instance_dir: Path, as_json: bool, packages: bool) -> None:
    """Print the provenance of every record in ``instance_dir`` (see ``ductaflow provenance``)."""
    if not instance_dir.is_dir():
        raise DuctaflowError(f"instance directory not found: {instance_dir}")
    records = _records(instance_dir.resolve())
    if not records:
        raise DuctaflowError(f"no status record in {instance_dir} (or its runs/ folders)")
    runs_root = runs_root_of(instance_dir)
    envs = {h: read_environment(runs_root, h) if runs_root else None for h in _hashes(records)}
    if as_json:
        click.echo(json.dumps([_as_json(r, envs) for r in records], indent=2, ensure_ascii=False))
        return
    first = records[0].provenance
    for i, rec in enumerate(records):
        same = i > 0 and rec.provenance is not None and rec.provenance.to_record() == (first and first.to_record())
        click.echo(f"{rec.flow}  {rec.status.value}  {rec.started or ''}  {rec.execution_dir}")
        if same:
            click.echo("  same code and environment as the first record")
            continue
        for line in describe(rec.provenance, envs, packages):
            click.echo(f"  {line}")


def _records(folder: Path) -> list[FlowResult]:
    """The records of ``folder`` (a flow's, or a build's) first, then those of a build's flows."""
    own = [read_status(p) for p in sorted(folder.glob(f"*{STATUS_SUFFIX}"))]
    return [r for r in own if r is not None] + flow_records(folder)


def _hashes(records: list[FlowResult]) -> set[str]:
    return {r.provenance.env_hash for r in records if r.provenance is not None and r.provenance.env_hash}


def describe(prov: Provenance | None, envs: dict[str, StoredEnvironment | None], packages: bool) -> list[str]:
    """The lines that say what made a run (its provenance as recorded, the environment as stored)."""
    if prov is None:
        return ["no provenance recorded (a record written before status schema 6, or a run that never started)"]
    lines = [
        f"code      {prov.code_line}",
        f"python    {prov.python_version} {prov.python_implementation}  {prov.executable}",
        f"platform  {prov.platform}",
        f"ductaflow {prov.ductaflow_version}",
        f"ran by    {prov.user or '?'}@{prov.host}",
    ]
    stored = envs.get(prov.env_hash or "")
    if prov.env_hash is None:
        lines.append("env       unknown (the installed distributions could not be listed)")
    elif stored is None:
        lines.append(f"env       {prov.env_hash} (its distribution list is not stored under this runs root)")
    else:
        lines.append(f"env       {prov.env_hash}: {len(stored.distributions)} distributions ({stored.path})")
        lines.append(f"          {_compare(stored.distributions)}")
        if packages:
            lines.extend(f"            {d}" for d in stored.distributions)
    return lines


def _compare(then: tuple[str, ...]) -> str:
    """How this process's environment differs from ``then`` (a stored list), in one line."""
    now_env = environment()
    if now_env is None:
        return "this environment's distributions cannot be listed"
    before, after = _versions(then), _versions(now_env.distributions)
    if before == after:
        return "the same as this environment"
    changed = [f"{n} {before[n]} -> {after[n]}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    added = [f"+{n} {after[n]}" for n in sorted(after.keys() - before.keys())]
    removed = [f"-{n} {before[n]}" for n in sorted(before.keys() - after.keys())]
    diffs = changed + added + removed
    shown = ", ".join(diffs[:12]) + (f", and {len(diffs) - 12} more" if len(diffs) > 12 else "")
    return f"differs from this environment: {shown}"


def _versions(dists: tuple[str, ...]) -> dict[str, str]:
    return dict(d.split(_PIN, 1) for d in dists if _PIN in d)


def _as_json(rec: FlowResult, envs: dict[str, StoredEnvironment | None]) -> dict[str, Any]:
    prov = rec.provenance
    stored = envs.get(prov.env_hash or "") if prov is not None else None
    return {
        "flow": rec.flow,
        "instance_dir": str(rec.execution_dir),
        "status": rec.status.value,
        "started": rec.started,
        "provenance": prov.to_record() if prov is not None else None,
        "distributions": list(stored.distributions) if stored is not None else None,
    }
