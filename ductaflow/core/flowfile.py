"""A flow on disk: read it as a notebook, find its parameters cell, inject a config."""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import pprint
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ductaflow.core.config import check_path, load_config_file
from ductaflow.errors import FlowFileError, MissingParametersCell

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
FLOW_SUFFIXES = (".py", ".ipynb")
#: Configs whose JSON is longer than this are injected as one JSON string, not a dict literal.
LITERAL_LIMIT = 200_000
_DEFAULT_CONFIG_CALL = re.compile(
    r"""(?:flow_config|load_cli_config)\(\s*(?:config\s*,\s*)?(?:default_config_path\s*=\s*)?[rR]?["']([^"']+\.json)["']"""
)


@dataclass(frozen=True)
class Flow:
    """A parsed flow file."""

    path: Path
    notebook: NotebookNode
    #: the cell tagged ``parameters`` (None: the notebook has none, and runs as it is)
    parameters_index: int | None
    #: ``mtime_ns:size`` of the file, taken before it was read: what a run records with the
    #: code hash, so that an edit made after the read is seen as a change (``core.deps``).
    stamp: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def code_sources(self) -> list[str]:
        return [c.source for c in self.notebook.cells if c.cell_type == "code"]

    def code_hash(self) -> str:
        """Hash of the code cells only: markdown and trailing whitespace do not count."""
        h = hashlib.sha256()
        for src in self.code_sources:
            lines = [ln.rstrip() for ln in src.strip("\n").splitlines()]
            h.update("\n".join(lines).encode())
            h.update(b"\x00")
        return h.hexdigest()

    def default_config_path(self, project_root: Path) -> Path | None:
        """The default config the flow names in its source, else the ``config/<kind>/`` convention."""
        for src in self.code_sources:
            m = _DEFAULT_CONFIG_CALL.search(src)
            if m:
                return (project_root / m.group(1)).resolve()
        kind = "builds" if self.path.parent.name == "builds" else "flows"
        conventional = project_root / "config" / kind / f"{self.name}.json"
        return conventional if conventional.is_file() else None

    def default_config(self, project_root: Path) -> dict[str, Any]:
        """The flow's default config (see :meth:`default_config_path`), or {} when it has none;
        a file that cannot be used raises :class:`~ductaflow.errors.ConfigError`."""
        path = self.default_config_path(project_root)
        return load_config_file(path) if path is not None and path.is_file() else {}

    def parameter_names(self) -> tuple[str, ...]:
        """Names the parameters cell assigns besides ``config`` (papermill's convention: ``msg = None``)."""
        if self.parameters_index is None:
            return ()
        try:
            tree = ast.parse(self.notebook.cells[self.parameters_index].source)
        except SyntaxError:
            return ()
        names: list[str] = []
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []  # fmt: skip
            names += [t.id for t in targets if isinstance(t, ast.Name) and t.id != "config" and t.id not in names]
        return tuple(names)

    def parameters_defaults(self) -> dict[str, Any]:
        """Keys of a literal ``config = {...}`` in the parameters cell (empty when not literal)."""
        if self.parameters_index is None:
            return {}
        try:
            tree = ast.parse(self.notebook.cells[self.parameters_index].source)
        except SyntaxError:
            return {}
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "config" for t in node.targets)
            ):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    return {}
                return value if isinstance(value, dict) else {}
        return {}


def read_flow(path: str | Path) -> Flow:
    """Parse ``path`` (Jupytext ``.py`` or ``.ipynb``); raise if it is not a usable flow."""
    check_path(path, "flow file", FlowFileError)
    p = Path(path)
    if not p.is_file():
        raise FlowFileError(f"flow file not found: {p}")
    if p.suffix not in FLOW_SUFFIXES:
        raise FlowFileError(f"{p} is not a flow: expected a Jupytext percent-format .py file or an .ipynb")
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FlowFileError(f"flow file {p} is not UTF-8 text") from None
    try:
        if p.suffix == ".py":
            import jupytext  # heavy (~0.3 s): deferred until a .py flow is read

            nb = jupytext.reads(text, fmt="py:percent")
        else:
            nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a flow"
        raise FlowFileError(f"cannot read {p} as a notebook: {exc}") from None
    indices = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    if len(indices) > 1:
        raise MissingParametersCell(
            f"{p} has {len(indices)} cells tagged 'parameters' (cells {indices}); keep exactly one"
        )
    language = _language(nb)
    if language != "python":  # never run another language's cells in a Python kernel
        kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name", language)
        raise FlowFileError(f"{p} declares the kernel '{kernel}' ({language}); ductaflow runs flows in Python kernels")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            _check_syntax(p, i, c.source)
    first = indices[0] if indices else None
    return Flow(path=p.resolve(), notebook=nb, parameters_index=first, stamp=f"{st.st_mtime_ns}:{st.st_size}")


def _language(nb: Any) -> str:
    """The language of the notebook's kernel, lower case (Python when it does not say)."""
    meta = nb.get("metadata", {})
    language = meta.get("kernelspec", {}).get("language") or meta.get("language_info", {}).get("name") or "python"
    return str(language).lower()


def _check_syntax(path: Path, index: int, source: str) -> None:
    """Refuse a cell IPython would refuse: plain Python is parsed as it is; a cell that is not is
    first transformed as IPython does (magics, ``!`` shell escapes, ``x?`` help)."""
    try:
        ast.parse(source)
        return
    except SyntaxError:
        pass
    # deferred: heavy, and needed only for cells that use IPython's syntax
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as exc:
        raise FlowFileError(f"{path}: syntax error in cell {index}, line {exc.lineno}: {exc.msg}") from None


def config_cell_source(config: dict[str, Any], config_file: str | None = None) -> str:
    """Python source assigning ``config``, so that the kernel sees exactly the given values.

    A readable dict literal. Above ``LITERAL_LIMIT`` characters of JSON the cell reads
    ``config_file`` (the recorded config beside the notebook, in the kernel's working
    directory) instead: a multi-megabyte literal takes minutes to format and compile and
    makes the notebook too big to open.
    """
    text = json.dumps(config, ensure_ascii=False, allow_nan=False)
    if len(text) > LITERAL_LIMIT:
        head = f"# Parameters injected by ductaflow: {len(text):,} characters of JSON"
        if config_file is None:
            return f"{head}\nconfig = __import__('json').loads({text!r})\n"
        return (
            f"{head}, read from the recorded config {config_file} beside this notebook\n"
            "import json as _ductaflow_json\n"
            f"with open({config_file!r}, encoding='utf-8') as _ductaflow_file:\n"
            "    config = _ductaflow_json.load(_ductaflow_file)\n"
            "del _ductaflow_json, _ductaflow_file\n"
        )
    body = pprint.pformat(config, indent=1, width=100, sort_dicts=False)
    return f"# Parameters injected by ductaflow\nconfig = {body}\n"


def injection_index(flow: Flow, config: dict[str, Any]) -> int | None:
    """Where the config cell goes: after the parameters cell; in a notebook without one, at the
    top when there is a config to give (as papermill does), else nowhere (it runs as it is)."""
    if flow.parameters_index is not None:
        return flow.parameters_index + 1
    return 0 if config else None


#: The note of a run whose notebook has no parameters cell but was given parameters.
INJECTED_AT_TOP = (
    "no cell is tagged 'parameters': the config (and each key as a variable) was injected at the top of the "
    "notebook, as papermill does"
)


def parameterise(flow: Flow, config: dict[str, Any], kernel_name: str | None = None) -> NotebookNode:
    """A copy of the flow's notebook with the config cell inserted after the parameters cell
    (see :func:`injection_index`).

    The notebook runs in an instance directory that holds ``<flow>_config.json`` (this
    config, recorded): a large config is read from there rather than inlined.
    """
    nb = nbformat.from_dict(flow.notebook)
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    at = injection_index(flow, config)
    if at is not None:
        source = config_cell_source(config, f"{flow.name}_config.json")
        if flow.parameters_index is None:  # papermill's convention too: each key as a variable
            names = [k for k in config if k.isidentifier() and not keyword.iskeyword(k)]
        else:  # the names the parameters cell declares, as papermill sets them
            names = [k for k in flow.parameter_names() if k in config]
        source += "".join(f"\n{k} = config[{k!r}]" for k in names)
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = [INJECTED_TAG]
        nb.cells.insert(at, cell)
    for c in nb.cells:  # nbformat >= 5.1 wants ids; jupytext output may lack them
        c.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for c in nb.cells:
        c["id"] = nbformat.v4.new_code_cell().id
    ks = nb.metadata.setdefault("kernelspec", {})
    if kernel_name:
        ks.update({"name": kernel_name, "display_name": kernel_name})
    else:
        ks.setdefault("name", "python3")
        ks.setdefault("display_name", "Python 3")
        ks.setdefault("language", "python")
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata["ductaflow"] = {"flow_path": str(flow.path)}
    return nb
