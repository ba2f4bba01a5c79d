"""Where this code runs: inside a Jupyter kernel, or as a plain Python process."""

from __future__ import annotations

import sys


def is_notebook_execution() -> bool:
    """True inside a Jupyter/papermill kernel; False for ``python flows/x.py`` (any arguments)."""
    if "IPython" not in sys.modules:  # not imported: certainly no kernel (and no need to import it)
        return False
    try:
        # deferred: IPython is heavy, and loaded already when it matters
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
