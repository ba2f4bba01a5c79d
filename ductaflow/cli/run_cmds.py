"""``ductaflow run`` and ``ductaflow debug``: one flow, one instance directory."""


from __future__ import annotations

import sys
from pathlib import Path

import click

from ductaflow.cli.app import cli
from ductaflow.cli.common import (
    _modules,
    _overrides,
    _start_template,
    result_line,
    retry_options,
)
from ductaflow.core.config import deep_merge, find_project_root, normalise_config


@cli.command()
@click.argument("flow", type=click.Path(path_type=Path))
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="JSON config (default: the flow's own).")
@click.option("--instance", help="Instance name: runs into runs/<flow>/<instance>/.")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Run into this directory instead.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (a.b for a nested one); the value is typed as papermill's -p types it.")
@click.option("-r", "--raw", "raws", nargs=2, multiple=True, metavar="KEY VALUE",
              help="Override a config key with VALUE as a string, untouched.")
@click.option("--allow-unknown", is_flag=True,
              help="Accept -p/-r keys the flow's parameters cell and default config do not name.")
@click.option("--timeout", type=float, help="Kill the flow after this many seconds.")
@click.option("--kernel", "kernel_name", metavar="NAME",
              help="Run in this installed kernelspec instead of the one the flow declares.")
@click.option("--html", is_flag=True, help="Also export the executed notebook as HTML.")
@click.option("--no-execute", is_flag=True, help="Prepare the instance directory only.")
@click.option("--force", is_flag=True, help="Run even when the instance is up to date.")
@click.option("--preload", "preload", multiple=True, metavar="MODULES",
              help="Modules the kernel template imports once (comma-separated; default: pyproject.toml).")
@click.option("--tracker", "trackers", multiple=True, metavar="NAME",
              help="Also log the run to this experiment tracker (noop, mlflow, wandb); repeatable.")
@retry_options("flow", default=0)
def run(
    flow: Path,
    config_file: Path | None,
    instance: str | None,
    output_dir: Path | None,
    params: tuple[str, ...],
    raws: tuple[tuple[str, str], ...],
    allow_unknown: bool,
    timeout: float | None,
    kernel_name: str | None,
    html: bool,
    no_execute: bool,
    force: bool,
    preload: tuple[str, ...],
    trackers: tuple[str, ...],
    retries: int,
    retry_on: tuple[str, ...],
    backoff: float | None,
) -> None:
    """Run FLOW once and print its light, duration and instance directory.

    The config is the flow's default config (or --config), with -p and then -r on top. -p
    values are typed as papermill types them, and JSON lists and objects are parsed (below);
    -r KEY VALUE keeps VALUE a string. A key neither the flow's parameters cell nor its
    default config names is refused, with the nearest names, unless --allow-unknown.

    \b
      -p flag=False            False, not the string 'False' (also false, True, true)
      -p x=None                None (also null)
      -p n=3 -p rate=0.05      3 and 0.05
      -p 'zones=[1, 2]'        a list;  -p 'opts={"a": 1}' an object
      -p model.iters=20        the nested key iters inside model
      -p city=Leeds            the string 'Leeds'
      -r code 007              the string '007' (-p would give 7)

    An instance whose last green/orange run had the same code and config is not run
    again (use --force). The flow runs in the kernelspec its notebook (or Jupytext header)
    declares; python3 or none means this interpreter; --kernel NAME picks another.
    --retries N runs a red flow again as the conductor's --retries does."""
    modules = _modules(preload)
    if not no_execute and kernel_name is None:
        _start_template(flow, modules)  # boots while the imports below run
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.core.flowfile import read_flow
    from ductaflow.run.execute import run_notebook  # deferred with the line above

    if instance and output_dir:
        raise click.UsageError("give --instance or --output-dir, not both")
    parsed = read_flow(flow)
    root = find_project_root(parsed.path)
    if config_file is not None:
        cfg = normalise_config(config_file)
    else:
        default = parsed.default_config_path(root)
        cfg = normalise_config(default) if default else {}
    cfg = deep_merge(cfg, _overrides(parsed, root, params, raws, allow_unknown))
    result = run_notebook(
        parsed.path,
        cfg,
        execution_dir=output_dir,
        project_root=root,
        instance_name=instance,
        timeout=timeout,
        export_html=html,
        kernel_name=kernel_name,
        no_execute=no_execute,
        raise_on_failure=False,
        force=force,
        preload=modules,
        trackers=trackers,
        retries=retries,
        retry_on=retry_on or None,
        backoff=backoff,
    )
    if no_execute:
        click.echo(f"prepared {result.flow} in {result.execution_dir} (not executed)")
        return
    click.echo(result_line(result))
    if result.error:
        click.echo(f"   {result.error.summary}", err=True)
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.argument("instance_dir", type=click.Path(path_type=Path))
@click.option("--flow", help="Which recorded flow, when the directory holds several.")
@click.option("--force", is_flag=True, help="Replace an existing debug notebook.")
def debug(instance_dir: Path, flow: str | None, force: bool) -> None:
    """Write a notebook for INSTANCE_DIR with its exact config, ready to open in Jupyter."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.debug import prepare_debug_notebook

    target = prepare_debug_notebook(instance_dir, flow=flow, force=force)
    click.echo(f"open {target} in Jupyter: its working directory is {target.parent}")
