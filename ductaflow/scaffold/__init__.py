"""``ductaflow init``: a new project from the template shipped in ``scaffold/template/``.

Every template file ends in ``.tmpl``, which is dropped (so the template's flows are not
modules of this package to linters, type checkers or test collectors); a leading ``dot-``
becomes ``.`` (package data globs skip dot files). ``{{ project_name }}`` is replaced by a
distribution name made from the directory's name.

Nothing that exists is ever replaced: a non-empty directory is refused unless ``force``,
and then only the missing files are written (each opened with ``O_EXCL``), the others are
listed as skipped.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ductaflow.core.config import check_path
from ductaflow.errors import DuctaflowError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

log = logging.getLogger(__name__)

TEMPLATE_DIR = "template"
TEMPLATE_SUFFIX = ".tmpl"
DOT_PREFIX = "dot-"
NAME_TOKEN = "{{ project_name }}"
DEFAULT_NAME = "ductaflow-project"


@dataclass(frozen=True)
class InitResult:
    """What ``init_project`` did: the project root and the files (relative to it) it wrote or left alone."""

    root: Path
    created: tuple[PurePosixPath, ...]
    skipped: tuple[PurePosixPath, ...]


def template_files() -> list[tuple[PurePosixPath, Traversable]]:
    """Every file of the template: its path in a new project, and the packaged file to copy."""
    base = resources.files(__name__).joinpath(TEMPLATE_DIR)
    return sorted(_walk(base, PurePosixPath()), key=lambda item: item[0].as_posix())


def _walk(folder: Traversable, rel: PurePosixPath) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _walk(entry, rel / entry.name)
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            yield rel / _target_name(entry.name), entry


def _target_name(name: str) -> str:
    """``dot-gitignore.tmpl`` -> ``.gitignore``; ``conductor.py.tmpl`` -> ``conductor.py``."""
    name = name[: -len(TEMPLATE_SUFFIX)]
    return "." + name[len(DOT_PREFIX) :] if name.startswith(DOT_PREFIX) else name


def project_name(root: Path) -> str:
    """A valid distribution name (PEP 508) for pyproject.toml, from the directory's name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip("-._").lower()
    return name or DEFAULT_NAME


def init_project(dest: str | os.PathLike[str], force: bool = False) -> InitResult:
    """Scaffold a runnable project into ``dest`` (created when missing); never replace a file.

    Raises DuctaflowError when ``dest`` is a file, or a non-empty directory without ``force``.
    """
    check_path(dest, "project directory")
    root = Path(dest).resolve()
    _check_destination(root, force)
    name = project_name(root)
    created: list[PurePosixPath] = []
    skipped: list[PurePosixPath] = []
    for rel, source in template_files():
        text = source.read_text(encoding="utf-8").replace(NAME_TOKEN, name)
        (created if _write_new(root, rel, text) else skipped).append(rel)
    log.info("init %s: %d file(s) created, %d skipped", root, len(created), len(skipped))
    return InitResult(root, tuple(created), tuple(skipped))


def _check_destination(root: Path, force: bool) -> None:
    """``root`` may be missing or an empty directory; a non-empty one only with ``force``."""
    try:
        if root.exists() and not root.is_dir():
            raise DuctaflowError(f"{root} exists and is not a directory; init scaffolds a project into a directory")
        occupied = root.is_dir() and any(root.iterdir())
    except OSError as exc:  # a name too long, a folder that cannot be listed
        raise DuctaflowError(f"cannot use {root} as the project directory: {exc.strerror or exc}") from None
    if occupied and not force:
        raise DuctaflowError(
            f"{root} is not empty; pass --force to add only the missing files of the template "
            "(an existing file is never replaced)"
        )


def _write_new(root: Path, rel: PurePosixPath, text: str) -> bool:
    """Write ``root/rel`` unless something is already there (or in the way): True when written."""
    path = root.joinpath(*rel.parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8", newline="\n") as fh:
            try:
                fh.write(text)
            except BaseException:
                path.unlink()  # our own half-written file, never one that was there before
                raise
    except (FileExistsError, NotADirectoryError):
        log.debug("init: %s exists (or a file is in the way): left as it is", path)
        return False
    except OSError as exc:
        raise DuctaflowError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True
