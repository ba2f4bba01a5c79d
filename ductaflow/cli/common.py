"""Helpers shared by the ``ductaflow`` commands: overrides from -p/-r, result lines, preloads."""


from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ductaflow.core.config import deep_merge, find_project_root
from ductaflow.errors import ConfigError, DuctaflowError

if TYPE_CHECKING:  # an annotation only: the store's result module imports provenance (importlib.metadata)
    from ductaflow.store.result import FlowResult


def _parse_override(item: str) -> dict[str, Any]:
    """``-p a.b=3`` -> ``{"a": {"b": 3}}``, the value typed as papermill types it
    (:func:`ductaflow.core.params.parse_value`)."""
    # deferred: ductaflow.core.params reads flows (nbformat is heavy)
    from ductaflow.core.params import nest, parse_value

    if "=" not in item:
        raise ConfigError(f"-p expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    where = f"-p {key[:80]!r}"  # the key, not the value: a value may be megabytes
    return nest(key, parse_value(raw, where), where)


def _overrides(flow: Any, root: Path, params: tuple[str, ...], raws: tuple[tuple[str, str], ...],
               allow_unknown: bool) -> dict[str, Any]:
    """``-p`` then ``-r`` overrides, merged; keys ``flow`` (a Flow) does not know are a ConfigError
    naming the nearest known ones, unless ``allow_unknown``."""
    # deferred: reads flows (jupytext, nbformat are heavy)
    from ductaflow.core.config import check_keys
    from ductaflow.core.params import config_paths, describe_unknown, flow_names, nest  # deferred with the line above

    out: dict[str, Any] = {}
    for part in [_parse_override(item) for item in params] + [nest(k, v, "-r") for k, v in raws]:
        out = deep_merge(out, part)
    check_keys(out, "-p/-r")  # a key that cannot be a parameter at all says so first
    known = flow_names(flow, root)
    if not known:
        logging.getLogger(__name__).info("flow %s names no parameter: -p keys not checked", flow.name)
    elif not allow_unknown and known.unknown(config_paths(out, known)):
        problems = describe_unknown("parameter", known.unknown(config_paths(out, known)), known)
        raise ConfigError(
            f"flow {flow.name}: {problems} (the flow's parameters cell and default config do not name it); "
            "pass --allow-unknown to run with it anyway"
        )
    return out


def result_line(result: FlowResult) -> str:
    """One line: light, flow, duration, instance dir (and the reason when not green)."""
    dur = f"{result.duration:.1f}s" if result.duration is not None else "-"
    line = f"{result.status.emoji} {result.status.value:<6} {result.flow}  {dur}  {result.execution_dir}"
    if result.skipped:
        line += "  (up to date: not re-run; --force to run anyway)"
    elif result.status.value != "green":
        line += f"  ({result.reason})"
    if result.retried and not result.skipped:
        line += f"  (attempt {result.attempt}: after {result.retried} retr{'y' if result.retried == 1 else 'ies'})"
    return line


_LIGHTS = {"green": "🟢", "orange": "🟠", "red": "🔴"}


def _modules(values: tuple[str, ...]) -> list[str] | None:
    """``--preload a,b --preload c`` -> ``["a", "b", "c"]``; None when not given."""
    return [m for v in values for m in v.split(",") if m.strip()] if values else None


def _start_template(flow: Path, preload: list[str] | None) -> None:
    """Start the kernel template now, so it boots while ductaflow imports papermill."""
    # deferred: each command imports only what it runs (papermill, pandas, Jinja2 are heavy)
    from ductaflow.kernels.fork import template_for
    from ductaflow.kernels.options import kernel_options  # deferred with the line above

    try:
        options = kernel_options(find_project_root(flow.resolve()), preload)
        if options.forks:
            template_for(options.preload, wait=False)
    except (DuctaflowError, OSError):
        pass  # run_notebook reports a bad setting itself, before it writes anything


def _light_counts(counts: dict[str, int]) -> str:
    """'6 green, 3 orange, 0 red' from a status value count."""
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in _LIGHTS)


def retry_options(what: str, default: int | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--retries``, ``--retry-on`` and ``--backoff`` options, their help naming ``what`` is
    retried (a flow, a build): ``ductaflow run`` and ``ductaflow conduct`` share one retry policy."""
    options = [
        click.option("--retries", type=click.IntRange(min=0), default=default, metavar="N",
                     help=f"Run a red {what} again up to N times when its failure is an infrastructure one "
                     "(kernel_died, worker_lost, timeout, start_failed) or listed in --retry-on."),
        click.option("--retry-on", "retry_on", multiple=True, metavar="KIND|EXCEPTION",
                     help="A failure kind or exception type name that earns a retry; repeatable "
                     "(default: the four above)."),
        click.option("--backoff", type=click.FloatRange(min=0), metavar="SECONDS",
                     help="Wait before the first retry (doubling each time, with jitter; default 1)."),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
