"""A flow on disk: read it as a notebook, find its parameters cell, inject a config."""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import pprint
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ductaflow.core.config import check_path, load_config_file
from ductaflow.errors import FlowFileError, MissingParametersCell

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: papermill's tag on the markdown cells it inserts around a failure (a notebook saved from a
#: failed papermill output holds them): not the user's cells, dropped when a flow is read.
ERROR_MARKER_TAG = "papermill-error-cell-tag"
#: The kernelspec name that means this interpreter (Jupyter's default name for Python): a flow
#: that declares it, or no kernel at all, runs in ductaflow's own (forked) Python kernel.
NATIVE_KERNEL = "python3"
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
    def kernel_name(self) -> str | None:
        """The kernelspec name the notebook declares (a ``.py`` flow: in its Jupytext header)."""
        name = self.notebook.get("metadata", {}).get("kernelspec", {}).get("name")
        return str(name) if name else None

    @property
    def language(self) -> str:
        """The language the notebook declares, lower case (Python when it does not say)."""
        return _language(self.notebook)

    @property
    def code_sources(self) -> list[str]:
        return [c.source for c in self.notebook.cells if c.cell_type == "code"]

    def code_hash(self) -> str:
        """Hash of the code cells only: markdown and trailing whitespace do not count. A kernelspec
        the flow declares other than ductaflow's own (``python3``) counts too: the same code in
        another kernel is another computation (for ``python3`` the hash stays as it always was)."""
        h = hashlib.sha256()
        for src in self.code_sources:
            lines = [ln.rstrip() for ln in src.strip("\n").splitlines()]
            h.update("\n".join(lines).encode())
            h.update(b"\x00")
        if self.kernel_name not in (None, NATIVE_KERNEL):
            h.update(f"kernel:{self.kernel_name}".encode())
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
        """Names the parameters cell assigns besides ``config`` (papermill's convention: ``msg = None``;
        in another language, a line starting ``name <-``, ``name =`` or ``name :=``)."""
        if self.parameters_index is None:
            return ()
        if self.language != "python":
            found = _OTHER_LANGUAGE_ASSIGNMENT.findall(self.notebook.cells[self.parameters_index].source)
            return tuple(dict.fromkeys(n for n in found if n != "config"))
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


def resolve_flow_path(notebook_file: str | Path, project_root: str | Path | None) -> Path:
    """A flow path as given (relative to the cwd), else relative to the project root."""
    p = Path(notebook_file)
    if not p.is_absolute() and not p.exists() and project_root:
        candidate = Path(project_root) / p
        if candidate.exists():
            return candidate
    return p


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
    # Cells papermill or ductaflow added to an executed copy are not the flow's: cell numbers
    # (syntax errors, a failing cell) count the flow's own cells only.
    nb.cells = [c for c in nb.cells if not _generated(c)]
    indices = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    if len(indices) > 1:
        raise MissingParametersCell(
            f"{p} has {len(indices)} cells tagged 'parameters' (cells {indices}); keep exactly one"
        )
    if _language(nb) == "python":  # another language's cells are its kernel's to judge
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code":
                _check_syntax(p, i, c.source)
    first = indices[0] if indices else None
    return Flow(path=p.resolve(), notebook=nb, parameters_index=first, stamp=f"{st.st_mtime_ns}:{st.st_size}")


def _generated(cell: Any) -> bool:
    """A cell papermill inserted around a failure, or an injected-parameters cell."""
    tags = cell.get("metadata", {}).get("tags", [])
    return ERROR_MARKER_TAG in tags or INJECTED_TAG in tags


#: An assignment at the start of a line in R (``x <- 1``, ``x = 1``), Julia, Scala (``val x =``),
#: MATLAB, PowerShell (``$x =``) and similar: what papermill's translators write, read back.
_OTHER_LANGUAGE_ASSIGNMENT = re.compile(r"^[ \t]*(?:val |var |let |\$)?([A-Za-z_][\w.]*)[ \t]*(?:<-|:?=(?!=))", re.M)


def _language(nb: Any, lower: bool = True) -> str:
    """The language of the notebook's kernel, lower case unless asked (Python when it does not say)."""
    meta = nb.get("metadata", {})
    language = str(meta.get("kernelspec", {}).get("language") or meta.get("language_info", {}).get("name") or "python")
    return language.lower() if lower else language


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
    return 0 if user_parameters(config) else None


def recorded_parameters(config: dict[str, Any], config_file: str) -> dict[str, Any]:
    """What the executed notebook's ``metadata.papermill.parameters`` holds, as papermill's does:
    the given parameters; above ``LITERAL_LIMIT`` characters of JSON only a pointer to the
    recorded config file, so a large config is not stored twice."""
    given = user_parameters(config)
    if len(json.dumps(given, ensure_ascii=False, allow_nan=False)) > LITERAL_LIMIT:
        return {"_config_file": config_file}
    return given


def user_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters a caller gave: the config without ductaflow's own ``_`` keys (``_project_root``...)."""
    return {k: v for k, v in config.items() if not str(k).startswith("_")}


#: The note of a run whose notebook has no parameters cell but was given parameters.
INJECTED_AT_TOP = (
    "no cell is tagged 'parameters': the config (and each key as a variable) was injected at the top of the "
    "notebook, as papermill does"
)


def parameterise(
    flow: Flow, config: dict[str, Any], kernel_name: str | None = None, kernelspec: Mapping[str, str] | None = None
) -> NotebookNode:
    """A copy of the flow's notebook with the config cell inserted after the parameters cell
    (see :func:`injection_index`), written in the language of the kernel it will run in.

    ``kernelspec`` (``name``, ``display_name``, ``language``, as notebook metadata) is the
    kernel the run uses when it is not the flow's own Python kernel; ``kernel_name`` alone
    only renames the kernel. The notebook runs in an instance directory that holds
    ``<flow>_config.json`` (this config, recorded): a large config is read from there
    rather than inlined.
    """
    nb = nbformat.from_dict(flow.notebook)
    kept = [i for i, c in enumerate(nb.cells) if not _generated(c)]
    nb.cells = [nb.cells[i] for i in kept]
    at = injection_index(flow, config)
    if at is not None:
        if flow.parameters_index is None:  # papermill's convention too: each key as a variable
            names = [k for k in config if k.isidentifier() and not keyword.iskeyword(k)]
        else:  # the names the parameters cell declares, as papermill sets them
            names = [k for k in flow.parameter_names() if k in config]
            at = kept.index(flow.parameters_index) + 1 if flow.parameters_index in kept else at
        name = (kernelspec or {}).get("name") or kernel_name or flow.kernel_name or NATIVE_KERNEL
        language = str((kernelspec or {}).get("language") or _language(flow.notebook, lower=False))
        cell = nbformat.v4.new_code_cell(_injected_source(flow, config, names, name, language))
        cell.metadata["tags"] = [INJECTED_TAG]
        nb.cells.insert(at, cell)
    for c in nb.cells:  # nbformat >= 5.1 wants ids; jupytext output may lack them
        c.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for c in nb.cells:
        c["id"] = nbformat.v4.new_code_cell().id
    _set_kernelspec(nb, kernel_name, kernelspec)
    nb.metadata["ductaflow"] = {"flow_path": str(flow.path)}
    return nb


def _injected_source(flow: Flow, config: dict[str, Any], names: list[str], kernel: str, language: str) -> str:
    """The injected cell: ``config`` and ``names`` (keys of it) assigned in ``language``; a
    language other than Python through papermill's translators, as papermill writes it."""
    if language.lower() == "python":
        source = config_cell_source(config, f"{flow.name}_config.json")
        return source + "".join(f"\n{k} = config[{k!r}]" for k in names)
    # heavy: papermill, deferred until a flow in another language is parameterised
    from papermill.exceptions import PapermillException
    from papermill.translators import translate_parameters  # deferred with the line above

    try:
        values = {"config": config, **{k: config[k] for k in names}}
        return str(translate_parameters(kernel, language, values, "Parameters injected by ductaflow"))
    except PapermillException as exc:
        raise FlowFileError(f"{flow.path}: cannot write a config cell for kernel '{kernel}': {exc}") from None


def _set_kernelspec(nb: NotebookNode, kernel_name: str | None, kernelspec: Mapping[str, str] | None) -> None:
    """Make the notebook's metadata name the kernel it runs in (see :func:`parameterise`)."""
    ks = nb.metadata.setdefault("kernelspec", {})
    if kernelspec:
        nb.metadata["kernelspec"] = dict(kernelspec)
        language = str(kernelspec.get("language") or "")
        if language and str(nb.metadata.get("language_info", {}).get("name", "")).lower() != language.lower():
            nb.metadata["language_info"] = {"name": language}
    elif kernel_name:
        ks.update({"name": kernel_name, "display_name": kernel_name})
    else:
        ks.setdefault("name", NATIVE_KERNEL)
        ks.setdefault("display_name", "Python 3")
        ks.setdefault("language", "python")
    nb.metadata.setdefault("language_info", {"name": "python"})
