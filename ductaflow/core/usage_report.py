"""What a flow's process says it used: one function that imports only the standard library.

Script mode calls it in its own process. A kernel gets this file's source in a silent
request after the flow's last cell (see ``ductaflow/kernels/silent.py``), which defines it
there, and a user expression calls it: a kernel never has to import ductaflow to answer
(that import cost ~0.1 s per fresh kernel). Keep it free of imports from ductaflow.
"""


def _ductaflow_report(root):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202 - sent as source
    """JSON: the module files under ``root`` this process imported, and the inputs the flow
    declared with ``ductaflow.inputs``. A module's file is read from its ``__dict__`` without
    attribute lookup, so a lazily loaded module is not loaded by being asked."""
    import json
    import os
    import sys

    prefix = os.path.join(os.path.abspath(root), "")
    files = set()
    for module in dict(sys.modules).values():  # a copy: a thread may import meanwhile
        try:
            f = object.__getattribute__(module, "__dict__").get("__file__")
        except Exception:  # noqa: BLE001 - not a module, or no __dict__
            continue
        if isinstance(f, str) and os.path.abspath(f).startswith(prefix):
            files.add(os.path.abspath(f))
    deps = dict(sys.modules).get("ductaflow.core.deps")
    declared = getattr(deps, "_DECLARED", None) or []
    marked = getattr(deps, "_ARTIFACTS", None) or []
    return json.dumps({"modules": sorted(files), "inputs": list(declared), "artifacts": list(marked)})
