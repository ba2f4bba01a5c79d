"""Dual mode inside a flow: the same file runs as a notebook, under papermill, or as a script.

Used from a flow's own code. In a kernel the config arrives injected (or, opened
interactively with ``config = {}``, from the flow's default config file); from a shell it
comes from ``--config`` and, with ``--output-dir``, the run is recorded exactly as
``run_notebook`` records it: execution log (tee'd to the terminal), config, status.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ductaflow.capture import OutputSink
from ductaflow.config import find_project_root, load_config_file
from ductaflow.errors import DuctaflowError
from ductaflow.models import ErrorInfo, FlowResult
from ductaflow.rundir import artifact_paths, atomic_write_json, clear_artifacts, contained_dir
from ductaflow.status import classify

PATH_KEY_SUFFIXES = ("_path", "_dir", "_file", "_folder")


def is_notebook_execution() -> bool:
    """True inside a Jupyter/papermill kernel; False for ``python flows/x.py`` (any arguments)."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


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
) -> dict[str, Any]:
    """One line at the top of a flow that gives it its config in every mode.

    ``config = flow_config(config, "config/flows/my_flow.json")``
    """
    if not is_notebook_execution():
        return load_cli_config(default_config_path, description)
    cfg = dict(config or {})
    if "_project_root" in cfg:  # injected by ductaflow
        return cfg
    root = find_project_root(Path.cwd())
    if not cfg:
        path = _resolve_default(default_config_path, root)
        if path is not None:
            cfg = load_config_file(path)
            print(f"interactive session: loaded default config {path}")
    cfg["_project_root"] = str(root)
    return cfg


def load_cli_config(
    default_config_path: str | Path | None = None, description: str | None = None
) -> dict[str, Any]:
    """Parse ``--config``, ``--output-dir``, ``--no-execute`` for a flow run as a script.

    The default config path is resolved against the project root. With ``--output-dir``
    the process moves into that directory (it is the flow's own process) and records the
    run there. Bad input exits with status 2 and one line on stderr.
    """
    root = _project_root()
    if is_notebook_execution():
        path = _resolve_default(default_config_path, root)
        cfg = load_config_file(path) if path else {}
        cfg.setdefault("_project_root", str(root))
        return cfg
    flow = _flow_file()
    parser = argparse.ArgumentParser(
        prog=flow.name if flow else None,
        description=description or (f"Run the flow {flow.stem}" if flow else None),
    )
    parser.add_argument("--config", help=f"JSON config file (default: {default_config_path})")
    parser.add_argument("--output-dir", help="instance directory to run in and record the run into")
    parser.add_argument("--no-execute", action="store_true", help="prepare the directory, do not run")
    args = parser.parse_args()
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
    os.environ["DUCTAFLOW_PROJECT_ROOT"] = str(root)  # this process is the flow's own
    if args.output_dir:
        try:
            out = contained_dir(args.output_dir, [root / "runs"])
        except DuctaflowError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        _CliRecorder.start(out, flow, cfg, no_execute=args.no_execute)
    if args.no_execute:
        print("--no-execute: config loaded, flow not run")
        raise SystemExit(0)
    return cfg


class _Tee:
    """A text stream that writes to the terminal and to the run's output sink."""

    def __init__(self, original: TextIO, sink: OutputSink, name: str) -> None:
        self._original, self._sink, self._name = original, sink, name

    def write(self, text: str) -> int:
        self._original.write(text)
        self._sink.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._original, attr)


class _CliRecorder:
    """Records a script-mode run with ``--output-dir`` like run_notebook records one."""

    active: _CliRecorder | None = None

    def __init__(self, exec_dir: Path, flow: Path | None, cfg: dict[str, Any]) -> None:
        self.exec_dir = exec_dir
        self.flow_path = flow or Path("flow")
        self.name = self.flow_path.stem
        self.paths = artifact_paths(exec_dir, self.name)
        self.error: ErrorInfo | None = None
        self.interrupted = False
        self.exit_code: int | None = None
        self.started = time.monotonic()
        from ductaflow.execute import now_iso

        self.started_iso = now_iso()
        exec_dir.mkdir(parents=True, exist_ok=True)
        clear_artifacts(exec_dir, self.name)
        atomic_write_json(self.paths["config"], cfg)

    @classmethod
    def start(cls, exec_dir: Path, flow: Path | None, cfg: dict[str, Any], no_execute: bool) -> None:
        try:
            rec = cls(exec_dir, flow, cfg)
        except OSError as exc:
            print(f"error: cannot write to {exec_dir}: {exc.strerror or exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if no_execute:
            return
        cls.active = rec
        rec.sink = OutputSink(rec.paths["log"])
        rec.stdout, rec.stderr = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, rec.sink, "stdout")  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, rec.sink, "stderr")  # type: ignore[assignment]
        rec.prev_hook = sys.excepthook
        rec.prev_exit = sys.exit
        sys.excepthook = rec.excepthook
        sys.exit = rec.exit  # type: ignore[assignment]
        os.chdir(exec_dir)  # the flow's own process: relative outputs land in the instance dir
        atexit.register(rec.finish)

    def excepthook(self, etype: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(etype, KeyboardInterrupt):
            self.interrupted = True
        text = "".join(traceback.format_exception(etype, value, tb))
        self.error = ErrorInfo(etype.__name__, str(value), text)
        self.prev_hook(etype, value, tb)

    def exit(self, code: Any = None) -> None:
        self.exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        if self.exit_code and self.error is None:
            self.error = ErrorInfo("SystemExit", str(code))
        self.prev_exit(code)

    def finish(self) -> None:
        from ductaflow.execute import now_iso, write_status

        sys.stdout.flush()
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.sink.close()
        status = classify(raised=self.error is not None, interrupted=self.interrupted, warnings=self.sink.warnings)
        result = FlowResult(
            flow=self.name,
            flow_path=self.flow_path,
            execution_dir=self.exec_dir,
            status=status,
            state="finished",
            started=self.started_iso,
            finished=now_iso(),
            duration=round(time.monotonic() - self.started, 3),
            warnings=tuple(self.sink.warnings),
            error=self.error,
            interrupted=self.interrupted,
            instance=self.exec_dir.name,
        )
        write_status(result, mode="script")


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
    """Show the config: a Markdown table in a notebook, aligned text in a terminal."""
    rows = [(path, repr(value)) for _, path, value in _flatten(config) if not path.startswith("_")]
    title = f"Config for {flow_name}" if flow_name else "Config"
    if is_notebook_execution():
        from IPython.display import Markdown, display

        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        table = "\n".join(f"| `{cell(k)}` | `{cell(v)}` |" for k, v in rows)
        display(Markdown(f"**{title}** ({len(rows)} keys)\n\n| key | value |\n|---|---|\n{table}"))
        return
    width = max((len(k) for k, _ in rows), default=0)
    print(f"{title} ({len(rows)} keys)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
