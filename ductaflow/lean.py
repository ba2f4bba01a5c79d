"""Importing heavy libraries without the parts ductaflow never uses.

papermill imports ``pyarrow.fs`` (with numpy) only to offer hdfs:// paths (and cloud
clients when installed), and jupytext imports its Jupyter-server contents managers
(tornado.web and more) and markdown-it for MyST; all are optional in those libraries, which
catch the ImportError. Hiding them saves ~0.25 s, ~0.14 s and ~0.09 s in every process that
runs or reads flows, build kernels included (measured with ``python -X importtime``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(*modules: str) -> Iterator[None]:
    """``modules`` cannot be imported inside the block (unless they already were), and can be after."""
    hid = [m for m in modules if m not in sys.modules]
    for module in hid:
        sys.modules[module] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for module in hid:
            if sys.modules.get(module, 0) is None:
                del sys.modules[module]


def jupytext() -> object:
    """The jupytext module, without its contents managers and MyST support (markdown-it,
    ~0.09 s): flows are py:percent. A process that imported jupytext through here cannot
    then read MyST notebooks with it; one that imported jupytext before is unaffected."""
    with hidden("jupytext.sync_contentsmanager", "jupytext.async_contentsmanager", "markdown_it", "mdit_py_plugins"):
        import jupytext

    return jupytext


@contextmanager
def stand_in(module: str) -> Iterator[None]:
    """Inside the block, ``import module`` gives an empty module (unless it was imported
    already); after it, the real one imports as usual. For a library that imports a heavy
    module at its top only to use it on paths ductaflow never takes (papermill's http://
    notebooks use requests: ~0.16 s)."""
    if module in sys.modules:
        yield
        return
    stub = sys.modules[module] = types.ModuleType(module, "stand-in: not imported by ductaflow")
    try:
        yield
    finally:
        if sys.modules.get(module) is stub:
            del sys.modules[module]
