"""Names that become directory names: instance, step, flow and build names."""

from __future__ import annotations

import os
import re

from ductaflow.errors import InvalidName

#: Names are 1-128 characters from this set and start with a letter or digit.
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")
SAFE_NAME_DOC = "1-128 characters from A-Z a-z 0-9 . _ = + -, starting with a letter or digit"
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
def validate_name(name: object, what: str = "instance name") -> str:
    """Return ``name`` if it is a safe single directory name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if name != name.strip() or not name:
        raise InvalidName(f"{what} {name!r} is empty or has surrounding whitespace")
    if "/" in name or "\\" in name or os.sep in name or name.startswith(".."):
        raise InvalidName(f"{what} {name!r} must be a single directory name ({SAFE_NAME_DOC})")
    if ".." in name:
        raise InvalidName(f"{what} {name!r} must not contain '..'")
    if not SAFE_NAME_RE.match(name):
        raise InvalidName(f"{what} {name!r} is not allowed: use {SAFE_NAME_DOC}")
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise InvalidName(f"{what} {name!r} is a reserved device name on Windows")
    if name.endswith("."):
        raise InvalidName(f"{what} {name!r} ends with '.', which Windows drops (clashing with {name.rstrip('.')!r})")
    return name


def check_component(name: object, what: str = "name") -> str:
    """``name`` if it is usable as one path component (any characters but ``/``, ``\\`` and NUL).

    For flow and build names, which come from file names and may hold spaces and accents;
    instance names must pass the stricter :func:`validate_name`.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InvalidName(f"{what} {name!r} is not a single file name")
    return name
