"""Turn a flow or a recorded instance into something to step through by hand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ductaflow.core.config import find_project_root, normalise_config
from ductaflow.core.flowfile import parameterise, read_flow, resolve_flow_path
from ductaflow.errors import DuctaflowError, FlowFileError, UnsafePath
from ductaflow.store.atomic import atomic_write_json, atomic_write_text
from ductaflow.store.layout import (
    CONFIG_SUFFIX,
    DEBUG_CONFIG_SUFFIX,
    DEBUG_NOTEBOOK_SUFFIX,
    artifact_path,
    contained_dir,
    flow_of_artifact,
)
from ductaflow.store.records import read_status

log = logging.getLogger(__name__)


def debug_flow(
    flow_path: str | Path,
    execution_dir: str | Path,
    config: dict[str, Any] | str | Path | None = None,
    force: bool = False,
) -> Path:
    """Prepare ``execution_dir`` for stepping through a flow in an IDE debugger.

    Writes the exact config and ``debug_<flow>.py``, a launcher that runs the real flow
    file (so breakpoints set in it are hit) in script mode with ``--output-dir`` set to
    ``execution_dir``. Returns the launcher's path. An existing non-empty directory is
    left alone unless ``force``.
    """
    cfg = normalise_config(config)
    flow = read_flow(resolve_flow_path(flow_path, cfg.get("_project_root")))
    root = Path(cfg.get("_project_root") or find_project_root(flow.path)).resolve()
    if config is None:
        default = flow.default_config_path(root)
        if default is not None:
            cfg = normalise_config(default)
    cfg["_project_root"] = str(root)
    exec_dir = contained_dir(execution_dir, [root / "runs"])
    if exec_dir.exists() and any(exec_dir.iterdir()) and not force:
        raise DuctaflowError(f"{exec_dir} is not empty; pass force=True to prepare a debug session there")
    exec_dir.mkdir(parents=True, exist_ok=True)
    config_file = exec_dir / f"{flow.name}{DEBUG_CONFIG_SUFFIX}"
    atomic_write_json(config_file, cfg)
    launcher = exec_dir / f"debug_{flow.name}.py"
    atomic_write_text(
        launcher,
        f'"""Debug launcher for {flow.name}: run or debug this file; breakpoints in the flow are hit."""\n'
        "import runpy\nimport sys\n\n"
        f"FLOW = {str(flow.path)!r}\n"
        f"sys.argv = [FLOW, '--config', {str(config_file)!r}, '--output-dir', {str(exec_dir)!r}]\n"
        "runpy.run_path(FLOW, run_name='__main__')\n",
    )
    log.info("debug session for %s prepared in %s", flow.name, exec_dir)
    return launcher


def prepare_debug_notebook(instance_dir: str | Path, flow: str | None = None, force: bool = False) -> Path:
    """Write ``<flow>_debug.ipynb`` into a recorded instance dir: its exact config injected.

    Opened in Jupyter the notebook's working directory is the instance dir, so relative
    paths resolve exactly as they did in the recorded run. The executed notebook (the
    evidence) is never touched.
    """
    inst = contained_dir(instance_dir)  # refuses a link out of the runs root it sits in
    if not inst.is_dir():
        raise DuctaflowError(f"instance directory not found: {inst}")
    configs = sorted(p for p in inst.glob(f"*{CONFIG_SUFFIX}") if not p.name.endswith(DEBUG_CONFIG_SUFFIX))
    names = [name for name in (flow_of_artifact(p.name, "config") for p in configs) if name]
    if flow is None:
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise DuctaflowError(f"{inst} holds {len(names)} recorded flows ({found}); name one with --flow")
        flow = names[0]
    elif flow not in names:
        raise DuctaflowError(f"{inst} has no recorded config for flow '{flow}' ({flow}{CONFIG_SUFFIX})")
    cfg = normalise_config(artifact_path(inst, flow, "config"))
    recorded = read_status(artifact_path(inst, flow, "status"))
    flow_path: Path | None = recorded.flow_path if recorded is not None else None
    if flow_path is None or not flow_path.is_file():
        root = Path(cfg.get("_project_root", "."))
        candidates = [root / d / f"{flow}.py" for d in ("flows", "builds")]
        flow_path = next((c for c in candidates if c.is_file()), None)
    if flow_path is None:
        raise FlowFileError(f"cannot find the source of flow '{flow}' recorded in {inst}")
    target = inst / f"{flow}{DEBUG_NOTEBOOK_SUFFIX}"
    if target.is_symlink():
        raise UnsafePath(f"{target} is a symlink; ductaflow does not write through links (remove it)")
    if target.exists() and not force:
        raise DuctaflowError(f"{target} exists; pass --force to replace it")
    # heavy: nbformat, deferred until a debug notebook is written
    import nbformat

    nb = parameterise(read_flow(flow_path), cfg)
    atomic_write_text(target, nbformat.writes(nb))  # replaces the file, never writes into another
    return target
