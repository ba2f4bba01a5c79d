"""Dual mode inside a flow: the same file runs as a notebook, under papermill, or as a script.

Used from a flow's own code. In a kernel the config arrives injected (or, opened
interactively with ``config = {}``, from the flow's default config file); from a shell it
comes from ``--config`` and, with ``--output-dir``, the run is recorded exactly as
``run_notebook`` records it: execution log (also shown on the terminal), config, status
(see :mod:`ductaflow.inflow.script_run`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from ductaflow.core.config import find_project_root, load_config_file
from ductaflow.core.context import RunContext
from ductaflow.core.seeds import seed, seed_globals
from ductaflow.core.session import is_notebook_execution
from ductaflow.errors import DuctaflowError
from ductaflow.inflow import interactive, script_run
from ductaflow.store.layout import contained_dir

PATH_KEY_SUFFIXES = ("_path", "_dir", "_file", "_folder")


def _flow_file() -> Path | None:
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None)
    return Path(f).resolve() if f else None


def _project_root() -> Path:
    flow = _flow_file()
    return find_project_root(flow if flow else Path.cwd())


def _resolve_default(default_config_path: str | Path | None, root: Path) -> Path | None:
    if default_config_path is None:
        return None
    p = Path(default_config_path)
    return p if p.is_absolute() else root / p


def flow_config(
    config: Mapping[str, Any] | None,
    default_config_path: str | Path | None = None,
    description: str | None = None,
    *,
    flow: str | Path | None = None,
    instance: str | Path | None = None,
) -> dict[str, Any]:
    """One line at the top of a flow that gives it its config in every mode.

    ``config = flow_config(config, "config/flows/my_flow.json")``. Opened as a notebook, the
    kernel then works in ``runs/<flow>/interactive`` (or ``instance``: ``"latest"``, a name, a
    directory; ``flow`` names the flow when the front end does not say), see
    :mod:`ductaflow.inflow.interactive`.
    """
    if not is_notebook_execution():
        return load_cli_config(default_config_path, description)
    cfg = dict(config or {})
    if "_project_root" in cfg:  # injected by ductaflow
        return cfg
    work = interactive.settle(default_config_path, flow, instance)  # enters runs/<flow>/... in this kernel
    root = work.root
    for line in work.lines:
        print(line)
    if not cfg:
        recorded = work.recorded_config
        path = recorded or _resolve_default(default_config_path, root)
        if path is not None:
            cfg = load_config_file(path)
            what = "the recorded config of that instance" if recorded else "default config"
            print(f"interactive session: loaded {what} {path}")
    cfg["_project_root"] = str(root)
    _seed_here(cfg)
    return cfg


def _seed_here(cfg: Mapping[str, Any]) -> None:
    """Script mode and interactive sessions: seed ``random`` and numpy as a kernel is seeded
    before its first cell, and let ``ductaflow.seed()`` return that seed in this process."""
    value = seed(cfg)
    seed_globals(value)
    os.environ.update((RunContext.inherited() or RunContext()).child(seed=value).env())


def load_cli_config(default_config_path: str | Path | None = None, description: str | None = None) -> dict[str, Any]:
    """Parse ``--config``, ``--output-dir``, ``--no-execute`` for a flow run as a script.

    The default config path is resolved against the project root. With ``--output-dir``
    the run is recorded there like ``run_notebook`` records one: this call runs the whole
    flow file again, in this process, inside the instance directory (see
    :mod:`ductaflow.inflow.script_run`), where this same call returns the config; then the
    process exits with the flow's exit status. Bad input exits with status 2 and one line
    on stderr.
    """
    recorded = script_run.active_config()
    if recorded is not None:  # the flow's own run, started by the call below
        _seed_here(recorded)
        return recorded
    root = _project_root()
    if is_notebook_execution():
        path = _resolve_default(default_config_path, root)
        cfg = load_config_file(path) if path else {}
        cfg.setdefault("_project_root", str(root))
        return cfg
    flow = _flow_file()
    args = _parse_args(flow, default_config_path, description)
    try:
        if args.config:
            cfg = load_config_file(args.config)
        else:
            path = _resolve_default(default_config_path, root)
            cfg = load_config_file(path) if path else {}
    except DuctaflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    cfg["_project_root"] = str(root)
    put_on_sys_path(flow, root)
    # this process is the flow's own: the runs it starts (a build's steps) find the project root
    os.environ.update((RunContext.inherited() or RunContext()).child(project_root=str(root)).env())
    if args.output_dir and not script_run.in_worker_process():
        _record(args.output_dir, flow, cfg, root, no_execute=args.no_execute)  # never returns
    if args.no_execute:
        print("--no-execute: config loaded, flow not run")
        raise SystemExit(0)
    _seed_here(cfg)
    return cfg


def put_on_sys_path(flow: Path | None, root: Path) -> None:
    """Script mode: ``sys.path`` holds the flow's directory, then the project root.

    Python already put the script's directory first; the project root is added right after
    it when it is not on ``sys.path`` yet (compared by real path), so ``import mypkg`` finds
    a package at the project root as it does in a kernel under ``run_notebook`` (whose
    ``sys.path`` starts with the instance directory, the flow's directory, the project root).
    Imports placed above the config line run before this: keep project imports below it.
    """
    at = 0
    if flow is not None:
        found = _on_sys_path(str(flow.parent))
        if found is None:
            sys.path.insert(0, str(flow.parent))
            found = 0
        at = found + 1
    if _on_sys_path(str(root)) is None:
        sys.path.insert(at, str(root))


def _on_sys_path(folder: str) -> int | None:
    """Where ``folder`` is on ``sys.path`` (compared by real path), or None."""
    real = os.path.realpath(folder)
    for i, entry in enumerate(sys.path):
        if isinstance(entry, str) and entry and os.path.realpath(entry) == real:
            return i
    return None


def _parse_args(flow: Path | None, default_config_path: str | Path | None, description: str | None) -> Any:
    parser = argparse.ArgumentParser(
        prog=flow.name if flow else None,
        description=description or (f"Run the flow {flow.stem}" if flow else None),
    )
    parser.add_argument("--config", help=f"JSON config file (default: {default_config_path})")
    parser.add_argument("--output-dir", help="instance directory to run in and record the run into")
    parser.add_argument("--no-execute", action="store_true", help="prepare the directory, do not run")
    return parser.parse_args()


def _record(output_dir: str, flow: Path | None, cfg: dict[str, Any], root: Path, no_execute: bool) -> NoReturn:
    """``--output-dir``: prepare the instance dir, then (unless ``no_execute``) run the flow recorded."""
    try:
        out = contained_dir(output_dir, [root / "runs"])
    except DuctaflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if flow is None or script is None:
        print("error: --output-dir needs the flow run from its file: python flows/<flow>.py", file=sys.stderr)
        raise SystemExit(2)
    run, state = script_run.ScriptRun(out, flow, cfg, root), None
    try:
        if no_execute:
            state = script_run.prepare_only(out, flow.stem, cfg)
        else:
            run.begin()
    except OSError as exc:
        print(f"error: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not no_execute:
        raise SystemExit(run.run(os.path.abspath(script)))
    if state is None:
        print("--no-execute: config loaded, flow not run")
    else:
        print(f"--no-execute: {out} already holds a {state} run; left as it is, flow not run")
    raise SystemExit(0)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, f"{path}."))
        else:
            out.append((str(key), path, value))
    return out


def unpack_config(
    config: Mapping[str, Any],
    flow_name: str | None = None,
    caller_locals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Config keys as variables: nested dicts flattened to their leaf keys.

    Keys starting with ``_`` stay in ``config`` only. Values of keys ending in
    ``_path``, ``_dir``, ``_file`` or ``_folder`` become ``pathlib.Path``. When two
    nested keys flatten to one name the shallower (then the first) wins and a
    warning line is printed, so the run turns orange instead of silently guessing.
    Use as ``vars().update(unpack_config(config, "My flow", locals()))``.
    """
    display_config_summary(config, flow_name)
    chosen: dict[str, tuple[str, Any]] = {}
    for leaf, path, value in sorted(_flatten(config), key=lambda t: t[1].count(".")):
        if leaf.startswith("_"):
            continue
        if leaf in chosen:
            first = chosen[leaf][0]
            print(f"Warning: config key '{leaf}' appears as '{first}' and '{path}'; using '{first}'")
            continue
        if isinstance(value, str) and leaf.endswith(PATH_KEY_SUFFIXES):
            value = Path(value)
        chosen[leaf] = (path, value)
    values = {leaf: value for leaf, (_, value) in chosen.items()}
    if caller_locals is not None:
        caller_locals.update(values)
    return values


def display_config_summary(config: Mapping[str, Any], flow_name: str | None = None) -> None:
    """Show the config: a Markdown table in a notebook, aligned text in a terminal.

    Every key and value is escaped for Markdown: a value never becomes markup or HTML (its
    text shows as it is), also where the notebook is rendered as a web page.
    """
    rows = [(path, repr(value)) for _, path, value in _flatten(config) if not path.startswith("_")]
    title = f"Config for {flow_name}" if flow_name else "Config"
    if is_notebook_execution():
        # heavy: IPython's display, deferred to the notebook branch
        from IPython.display import Markdown, display

        from ductaflow.core.mdescape import md_cell, md_text  # deferred with the line above: notebook only

        table = "\n".join(f"| {md_cell(k)} | {md_cell(v)} |" for k, v in rows)
        head = md_text(title)
        display(Markdown(f"**{head}** ({len(rows)} keys)\n\n| key | value |\n|---|---|\n{table}"))
        return
    width = max((len(k) for k, _ in rows), default=0)
    print(f"{title} ({len(rows)} keys)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
