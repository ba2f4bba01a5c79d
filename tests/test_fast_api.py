"""The public API: pinned, resolvable, cheap to import, and no submodule hidden by a function."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import ductaflow
import ductaflow.compat

PUBLIC = [
    "AnalysisError", "ConductorFailed", "ConfigError", "DuctaflowError", "ErrorInfo", "FinishedScenario", "FlowFailed",
    "FlowFileError", "FlowResult",
    "InvalidName", "MissingExtra", "MissingParametersCell", "ScenarioError", "SharedFilesystemError", "Status",
    "SweepNotFound", "UnsafePath", "WouldOverwrite", "__version__", "analyze_execution_logs", "artifacts", "conduct",
    "debug_flow",
    "deep_merge",
    "display_config_summary", "expand_grid", "flow_config", "generate_status_report", "inputs", "is_notebook_execution",
    "ledger", "load_cli_config", "load_config_file", "prepare_debug_notebook", "read_sweep_state", "record",
    "record_table",
    "reproducible_seed", "run_notebook", "run_step_flow", "seed", "step", "unpack_config", "write_report",
]


def test_all_is_pinned_and_sorted() -> None:
    assert ductaflow.__all__ == PUBLIC
    assert ductaflow.__all__ == sorted(ductaflow.__all__, key=lambda n: (n.startswith("_") and n != "__version__", n))


def test_every_public_name_resolves_to_its_defining_module() -> None:
    for name in PUBLIC:
        value = getattr(ductaflow, name)
        assert value is not None, name
        module = getattr(value, "__module__", None)
        if module is not None and callable(value):
            assert getattr(importlib.import_module(module), getattr(value, "__name__", name)) is value


def test_earlier_tools_names_are_the_same_objects() -> None:
    for name in ductaflow.compat.__all__:
        assert getattr(ductaflow, name) is getattr(ductaflow.compat, name), name


def test_no_submodule_is_shadowed_by_a_function() -> None:
    """``import ductaflow.x as m`` must give the module x wherever ductaflow also has an attribute x."""
    for info in __import__("pkgutil").iter_modules(ductaflow.__path__):
        module = importlib.import_module(f"ductaflow.{info.name}")
        attr = getattr(ductaflow, info.name)
        assert isinstance(attr, types.ModuleType) and attr is module, info.name


def test_importing_ductaflow_loads_no_heavy_library() -> None:
    """Every flow's kernel imports ductaflow for flow_config: it must not pay for papermill or pandas."""
    heavy = "('pandas', 'papermill', 'jinja2', 'nbclient')"
    code = f"import sys, ductaflow; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
