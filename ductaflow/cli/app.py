"""The ``ductaflow`` click group and its entry point, which maps every DuctaflowError to one line and its exit code."""


from __future__ import annotations

import gc
import logging
import sys

import click

from ductaflow.errors import DuctaflowError
from ductaflow.run.signals import Terminated

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process ended by it


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ductaflow")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """ductaflow: run notebook flows into instance directories."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        # Libraries that set their own loggers' levels (Dask's "distributed" logs INFO) still
        # reach this handler by propagation: the handler's level keeps them to -v.
        handler.setLevel(level)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the click group, turning our errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="ductaflow", standalone_mode=False)
    except DuctaflowError as exc:
        click.echo(f"ductaflow: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ductaflow: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        click.echo("ductaflow: terminated (SIGTERM)", err=True)
        sys.exit(EXIT_TERMINATED)
    except KeyboardInterrupt:
        click.echo("ductaflow: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def entry() -> None:
    """The ``ductaflow`` console script.

    Once the command is done (records written, kernels stopped), ``gc.freeze()`` moves every
    live object out of the collector's sight, so the interpreter's exit skips its final
    collection passes over papermill's import graph (~0.1 s per command, measured). Exit
    handlers, thread joins and stream flushes still run; only ``__del__`` of objects in
    reference cycles may not, which Python never promises at exit anyway.
    """
    try:
        main()
    finally:
        gc.freeze()
