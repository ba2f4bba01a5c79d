"""``ductaflow html``: readable, script-free pages of an instance's executed notebooks, on request."""

from __future__ import annotations

from pathlib import Path

import click

from ductaflow.cli.app import cli
from ductaflow.errors import DuctaflowError


@cli.command()
@click.argument("instance_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--flow", "flow", metavar="NAME", help="Only this flow (a flow name or its folder under runs/).")
def html(instance_dir: Path, flow: str | None) -> None:
    """Render the executed notebooks in INSTANCE_DIR as <flow>.html pages, whatever their light.

    INSTANCE_DIR is a flow's instance folder or a build instance (its flows under runs/ too).
    Each page sits beside its notebook, with the failing cell anchored and no script in it;
    the conductor's report links to it as "notebook" once the report is written again."""
    # deferred: each command imports only what it runs (nbconvert is heavy, imported when rendering)
    from ductaflow.run.notebook_html import notebooks_in, render_flow, require_nbconvert

    if not instance_dir.is_dir():
        raise DuctaflowError(f"instance directory not found: {instance_dir}")
    require_nbconvert()
    found = notebooks_in(instance_dir.resolve(), flow)
    if not found:
        what = f"of flow {flow!r} " if flow else ""
        raise DuctaflowError(f"no recorded run {what}in {instance_dir} (or its runs/ folders)")
    failed = 0
    for folder, name in found:
        page = render_flow(folder, name)
        if page is None:
            failed += 1
            click.echo(f"no page for {name} in {folder} (no executed notebook, or rendering failed: see the log)")
        else:
            click.echo(str(page))
    if failed == len(found):
        raise DuctaflowError("no page was written")
