"""The flow file reader (``ductaflow.core.flowfile``): what is a flow, where its default config is,
and how a config is injected (``config_cell_source``, ``parameterise``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from ductaflow.core import flowfile
from ductaflow.core.flowfile import INJECTED_TAG, config_cell_source, parameterise, read_flow
from ductaflow.errors import FlowFileError, MissingParametersCell

PARAMS = '# %% tags=["parameters"]\nconfig = {"alpha": 0.5, "name": "x"}\n\n'
BODY = "# %% [markdown]\n# A note\n\n# %%\n%time x = 1\n!ls\ny = config['alpha'] * 2\n"


def _write(tmp_path: Path, text: str, name: str = "flow.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _run_cell(source: str, cwd: Path | None = None) -> dict:
    """Execute an injected cell's source (plain Python) and return the config it assigns."""
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        scope: dict = {}
        exec(compile(source, "<injected>", "exec"), scope)  # noqa: S102 - the cell is ours
        return scope["config"]
    finally:
        os.chdir(here)


# ---------------------------------------------------------------- read_flow
def test_a_percent_file_is_read_as_a_notebook_with_its_parameters_cell(tmp_path: Path) -> None:
    flow = read_flow(_write(tmp_path, PARAMS + BODY, "model.py"))
    assert flow.name == "model" and flow.path == (tmp_path / "model.py").resolve()
    kinds = [c.cell_type for c in flow.notebook.cells]
    assert kinds == ["code", "markdown", "code"] and flow.parameters_index == 0
    assert flow.code_sources[1].startswith("%time x = 1")  # magics are kept, only the syntax check skips them
    assert flow.parameters_defaults() == {"alpha": 0.5, "name": "x"}


def test_an_ipynb_is_a_flow_too(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), params, nbformat.v4.new_code_cell("print(config)")]
    flow = read_flow(_write(tmp_path, nbformat.writes(nb), "nb.ipynb"))
    assert flow.parameters_index == 1 and flow.name == "nb"


@pytest.mark.parametrize(
    ("name", "text", "error", "message"),
    [
        ("notes.txt", PARAMS, FlowFileError, "is not a flow: expected a Jupytext percent-format .py file or an .ipynb"),
        ("f.py", PARAMS + '# %% tags=["parameters"]\nx = 1\n', MissingParametersCell,
         r"has 2 cells tagged 'parameters' \(cells \[0, 1\]\); keep exactly one"),
        ("f.py", PARAMS + "# %%\nx = 1\n\n# %%\nok = 1\nif x\n", FlowFileError, r"syntax error in cell 2, line 2"),
        ("f.ipynb", "{not json", FlowFileError, "cannot read .* as a notebook"),
    ],
)  # fmt: skip
def test_what_is_not_a_usable_flow_is_refused_by_name(
    tmp_path: Path, name: str, text: str, error: type[Exception], message: str
) -> None:
    path = _write(tmp_path, text, name)
    with pytest.raises(error, match=message) as info:
        read_flow(path)
    assert str(path) in str(info.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="flow file not found"):
        read_flow(tmp_path / "nope.py")
    (tmp_path / "latin.py").write_bytes(PARAMS.encode() + b"# %%\nx = '\xe9'\n")
    with pytest.raises(FlowFileError, match="is not UTF-8 text"):
        read_flow(tmp_path / "latin.py")


def test_default_config_path_from_the_source_else_the_convention(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    source = PARAMS + '# %%\nconfig = flow_config(config, "config/x.json")\n'
    named = read_flow(_write(tmp_path / "flows", source, "a.py"))
    assert named.default_config_path(tmp_path) == (tmp_path / "config" / "x.json").resolve()
    plain = read_flow(_write(tmp_path / "flows", PARAMS + "# %%\nx = 1\n", "b.py"))
    assert plain.default_config_path(tmp_path) is None
    (tmp_path / "config" / "flows").mkdir(parents=True)
    (tmp_path / "config" / "flows" / "b.json").write_text("{}")
    assert plain.default_config_path(tmp_path) == tmp_path / "config" / "flows" / "b.json"


def test_parameters_defaults_is_empty_when_not_a_literal(tmp_path: Path) -> None:
    text = '# %% tags=["parameters"]\nconfig = dict(a=1)\n\n# %%\nx = 1\n'
    assert read_flow(_write(tmp_path, text)).parameters_defaults() == {}


# ---------------------------------------------------------------- config_cell_source
def test_a_small_config_is_a_readable_literal_that_evaluates_to_itself() -> None:
    config = {"alpha": 0.5, "name": "été", "nested": {"b": [1, None, True]}, "_project_root": "/p"}
    source = config_cell_source(config)
    assert source.startswith("# Parameters injected by ductaflow\nconfig = {")
    assert _run_cell(source) == config
    assert list(_run_cell(source)) == list(config), "key order is the config's"


def test_a_large_config_is_read_from_the_recorded_file_or_decoded_from_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowfile, "LITERAL_LIMIT", 50)
    config = {"values": list(range(40)), "text": "é"}
    from_file = config_cell_source(config, "model_config.json")
    assert "read from the recorded config model_config.json" in from_file and "range" not in from_file
    (tmp_path / "model_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert _run_cell(from_file, cwd=tmp_path) == config
    inline = config_cell_source(config)
    assert "json').loads(" in inline
    assert _run_cell(inline) == config
    assert config_cell_source({"a": 1}).startswith("# Parameters injected by ductaflow\nconfig = {'a': 1}")


def test_nan_cannot_be_injected() -> None:
    with pytest.raises(ValueError):
        config_cell_source({"x": float("nan")})


# ---------------------------------------------------------------- parameterise
def test_parameterise_inserts_one_tagged_cell_after_the_parameters_cell(tmp_path: Path) -> None:
    flow = read_flow(_write(tmp_path, PARAMS + BODY, "model.py"))
    nb = parameterise(flow, {"alpha": 2.0})
    injected = nb.cells[1]
    assert injected.cell_type == "code" and injected.metadata["tags"] == [INJECTED_TAG]
    assert _run_cell(injected.source) == {"alpha": 2.0}
    assert len(nb.cells) == len(flow.notebook.cells) + 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["ductaflow"] == {"flow_path": str(flow.path)}
    ids = [c["id"] for c in nb.cells]
    assert len(set(ids)) == len(ids)
    nbformat.validate(nb)
    assert len(flow.notebook.cells) == 3, "the flow itself was changed"


def test_parameterising_again_replaces_the_injected_cell_and_a_kernel_name_is_set(tmp_path: Path) -> None:
    flow = read_flow(_write(tmp_path, PARAMS + BODY, "model.py"))
    once = parameterise(flow, {"alpha": 1})
    again = parameterise(flowfile.Flow(flow.path, once, flow.parameters_index), {"alpha": 3}, kernel_name="other")
    tagged = [c for c in again.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and _run_cell(tagged[0].source) == {"alpha": 3}
    assert again.metadata["kernelspec"]["name"] == again.metadata["kernelspec"]["display_name"] == "other"
    assert len(again.cells) == len(once.cells)


def test_a_large_config_is_injected_as_a_read_of_the_flows_recorded_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowfile, "LITERAL_LIMIT", 10)
    flow = read_flow(_write(tmp_path, PARAMS + BODY, "model.py"))
    source = parameterise(flow, {"alpha": 123456789}).cells[1].source
    assert "model_config.json" in source


IPYTHON_CELLS = [
    "%%bash\necho hi\n",
    "%%writefile notes.txt\nnot python (\n",
    "%%html\n<b>bold</b>\n",
    "x = !ls\n",
    "t = %time sum([1])\n",
    "len?\n",
    "if True:\n    !echo indented\n",
]


def _notebook(tmp_path: Path, sources: list[str], language: str = "python") -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nb.metadata["kernelspec"] = {"name": language, "language": language, "display_name": language}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_ipython_syntax_is_accepted_and_a_real_syntax_error_is_not(tmp_path: Path) -> None:
    """The pre-run check refuses only what IPython would refuse (issue 16)."""
    flow = read_flow(_notebook(tmp_path, IPYTHON_CELLS))
    assert [c.source for c in flow.notebook.cells[1:]] == IPYTHON_CELLS  # checked, never rewritten
    with pytest.raises(FlowFileError, match=r"syntax error in cell 2, line 1"):
        read_flow(_notebook(tmp_path, ["%time x = 1", "def f(:\n    pass\n"]))


def test_a_notebook_of_another_language_is_read_as_it_is_and_given_its_config_in_that_language(
    tmp_path: Path,
) -> None:
    """Its cells are its kernel's to judge; the config cell is written by papermill's translator (issue 16)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("config <- list()")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x <- c(1, 2)\nprint(x)\n")]
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    path = tmp_path / "r.ipynb"
    nbformat.write(nb, path)
    flow = read_flow(path)
    assert (flow.kernel_name, flow.language, flow.parameters_index) == ("ir", "r", 0)
    given = parameterise(flow, {"n": 2, "tags": ["a"]}, "ir", {"name": "ir", "language": "R", "display_name": "R"})
    assert given.cells[1].source.splitlines()[-1] == 'config = list("n" = 2, "tags" = list("a"))'
    assert given.metadata["kernelspec"] == {"name": "ir", "language": "R", "display_name": "R"}
    python = parameterise(flow, {"n": 2}, "python3", {"name": "python3", "language": "python", "display_name": "P"})
    assert _run_cell(python.cells[1].source) == {"n": 2}, "--kernel python3: the config cell is Python"
    assert python.metadata["kernelspec"]["name"] == "python3" and python.metadata["language_info"]["name"] == "python"


def test_papermills_error_markers_and_an_old_injected_cell_are_not_the_flows_cells(tmp_path: Path) -> None:
    """A notebook saved from a failed papermill output: cell numbers count the flow's own cells."""
    nb = nbformat.v4.new_notebook()
    banner = nbformat.v4.new_markdown_cell("<span>An Exception was encountered</span>")
    anchor = nbformat.v4.new_markdown_cell('<span id="papermill-error-cell">stopped here</span>')
    for marker in (banner, anchor):
        marker.metadata["tags"] = ["papermill-error-cell-tag"]
    old = nbformat.v4.new_code_cell("config = {'old': 1}")
    old.metadata["tags"] = [INJECTED_TAG]
    params = nbformat.v4.new_code_cell("config = {}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [banner, params, old, nbformat.v4.new_code_cell("x = 1"), anchor, nbformat.v4.new_code_cell("def f(:")]
    path = tmp_path / "failed.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(FlowFileError, match=r"syntax error in cell 2, line 1"):
        read_flow(path)
    nb.cells[-1].source = "y = x"
    nbformat.write(nb, path)
    flow = read_flow(path)
    assert [c.source for c in flow.notebook.cells] == ["config = {}", "x = 1", "y = x"]
    given = parameterise(flow, {"a": 1})
    assert [c.source for c in given.cells[2:]] == ["x = 1", "y = x"] and _run_cell(given.cells[1].source) == {"a": 1}


def test_a_notebook_without_parameters_cell_runs_as_it_is_or_takes_its_config_at_the_top(tmp_path: Path) -> None:
    """papermill's behaviour: no injected cell without parameters; with some, at the top (issue 16)."""
    flow = read_flow(_write(tmp_path, "# %%\nx = 1\n\n# %%\nprint(x)\n"))
    assert flow.parameters_index is None and flow.parameters_defaults() == {}
    as_is = parameterise(flow, {})
    assert [c.source for c in as_is.cells] == ["x = 1", "print(x)"]
    given = parameterise(flow, {"x": 2, "not a name": 1, "class": 3})
    assert INJECTED_TAG in given.cells[0].metadata["tags"]
    scope: dict = {}
    exec(compile(given.cells[0].source, "<injected>", "exec"), scope)  # noqa: S102 - the cell is ours
    assert scope["config"] == {"x": 2, "not a name": 1, "class": 3} and scope["x"] == 2 and "class" not in scope
    assert [c.source for c in given.cells[1:]] == ["x = 1", "print(x)"]


def test_names_a_parameters_cell_declares_are_set_as_papermill_sets_them(tmp_path: Path) -> None:
    flow = read_flow(_write(tmp_path, '# %% tags=["parameters"]\nmsg = None\nn: int = 1\n\n# %%\nprint(msg, n)\n'))
    assert flow.parameter_names() == ("msg", "n")
    nb = parameterise(flow, {"msg": "Hello", "other": 2})
    scope: dict = {}
    exec(compile(nb.cells[1].source, "<injected>", "exec"), scope)  # noqa: S102 - the cell is ours
    assert scope["msg"] == "Hello" and "n" not in scope and "other" not in scope


def test_a_notebook_given_a_config_without_a_parameters_cell_is_told_how_to_tag_one(tmp_path: Path) -> None:
    """The note names the editor's way for an .ipynb and the Jupytext marker for a .py; none when nothing was given."""
    from ductaflow.run.hints import config_notes

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    ipynb = read_flow(_write(tmp_path, nbformat.writes(nb), "nb.ipynb"))
    script = read_flow(_write(tmp_path, "# %%\nprint(1)\n", "s.py"))
    [note] = config_notes(ipynb, {"x": 1}, tmp_path)
    assert "injected at the top" in note and "JupyterLab" in note and "Add Cell Tag" in note, note
    [note] = config_notes(script, {"x": 1}, tmp_path)
    assert '# %% tags=["parameters"]' in note and "JupyterLab" not in note, note
    assert config_notes(ipynb, {}, tmp_path) == []


def test_recorded_parameters_are_the_given_ones_and_a_large_config_only_a_pointer() -> None:
    """metadata.papermill.parameters as papermill keeps it, without storing a large config twice."""
    from ductaflow.core.flowfile import LITERAL_LIMIT, recorded_parameters

    assert recorded_parameters({"msg": "Hello", "_project_root": "/p"}, "f_config.json") == {"msg": "Hello"}
    big = {"rows": "x" * (LITERAL_LIMIT + 1)}
    assert recorded_parameters(big, "f_config.json") == {"_config_file": "f_config.json"}


def test_an_r_parameters_cell_declares_its_names_and_they_are_injected_in_r(tmp_path: Path) -> None:
    """papermill's convention in another language: ``msg <- NULL`` is a parameter, set in R."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    params = nbformat.v4.new_code_cell('msg <- NULL\nn = 3\nconfig <- list()\nif (n == 3) print("x")')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(msg)")]
    flow = read_flow(_write(tmp_path, nbformat.writes(nb), "r.ipynb"))
    assert flow.parameter_names() == ("msg", "n")
    spec = {"name": "ir", "display_name": "R", "language": "R"}
    injected = parameterise(flow, {"msg": "hi", "other": 1}, kernelspec=spec).cells[1]
    assert INJECTED_TAG in injected.metadata["tags"]
    assert 'msg = "hi"' in injected.source and "config = list(" in injected.source, injected.source
    assert "\nother = " not in injected.source, injected.source  # undeclared: in config only
