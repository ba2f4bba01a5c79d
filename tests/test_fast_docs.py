"""The documentation stays navigable: a short README whose two set-up commands do not drift, a
walkthrough whose files are real flows, README links that lead to existing docs pages, every
page of docs/ in the MkDocs nav, and one spelling for every install hint. Reads files only; the
site itself is built by .ci/run (``mkdocs build --strict``)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jupytext
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

#: The README's two set-up commands, exactly (the docs' Getting started page includes them from the README).
COMMANDS = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[example]" && python conductor.py',
    "apt-get update && apt-get install -y chromium strace && python3 -m venv .venv && . .venv/bin/activate "
    '&& pip install -e ".[test]" && python -m pytest -q',
)
#: The one spelling of an install hint for an optional part of ductaflow (in ductaflow/errors.py the
#: extra is the f-string's ``{extra}``; the docs name the pattern as ``<extra>``).
HINT = re.compile(r"pip install 'ductaflow\[([a-z]+|\{extra\}|<extra>)\]'")
PLACEHOLDERS = {"{extra}", "<extra>"}


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _section(text: str, name: str) -> str:
    """What the README marks for the docs site (pymdownx.snippets ``--8<-- [start:name]``)."""
    start = text.index(f"--8<-- [start:{name}]")
    return text[text.index("\n", start) + 1 : text.index(f"--8<-- [end:{name}]")]


def _extras() -> set[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return set(project["optional-dependencies"])


def test_the_readme_is_short() -> None:
    lines = _readme().count("\n")
    assert lines <= 295, f"README.md has {lines} lines; move detail into docs/ (the README aims at ~280)"


def test_the_readme_opens_with_its_two_commands_unchanged() -> None:
    text = _readme()
    first_block = text[text.index("```bash\n") : text.index("```\n", text.index("```bash\n") + 1)]
    commands = [line for line in first_block.splitlines() if line and not line.startswith(("#", "```"))]
    assert commands == list(COMMANDS)
    assert text.index("```bash\n") < text.index("## "), "the commands come before any section"
    assert first_block in _section(text, "commands"), "the docs' Getting started page includes these lines"


def _walkthrough_files() -> dict[str, str]:
    walk = _section(_readme(), "walkthrough")
    return {m.group(1): m.group(2) for m in re.finditer(r'^```\w+ title="([^"]+)"\n(.*?)^```$', walk, re.S | re.M)}


def test_the_walkthrough_files_are_flows_and_configs() -> None:
    files = _walkthrough_files()
    assert {"flows/grow.py", "flows/summary.py", "builds/projection.py", "config/scenarios.csv"} <= set(files)
    for name, text in files.items():
        if name.endswith(".py"):
            cells = jupytext.reads(text, fmt="py:percent").cells
            tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
            assert len(tagged) == 1, f"{name}: a flow has exactly one cell tagged parameters"
            compile(text, name, "exec")
        elif name.endswith(".json"):
            assert isinstance(json.loads(text), dict), name
    for flow in ("grow", "summary"):
        assert f'flow_config(config, "config/flows/{flow}.json")' in files[f"flows/{flow}.py"]
        assert f"config/flows/{flow}.json" in files
    assert "../grow/population.csv" in files["builds/projection.py"]
    assert files["config/scenarios.csv"].splitlines()[0].split(",")[0] == "scenario_name"


def test_the_walkthrough_has_no_links() -> None:
    """The site includes it from the README: a relative link would point elsewhere in each place."""
    assert not re.search(r"\]\((?!https?://)", _section(_readme(), "walkthrough"))


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_readme_links_lead_to_docs_pages_and_headings() -> None:
    links = re.findall(r"\]\(((?:docs/)[^)#]*)(?:#([^)]*))?\)", _readme())
    assert {"docs/index.md", "docs/conductor.md", "docs/cli.md", "docs/api.md"} <= {path for path, _ in links}
    for path, anchor in links:
        page = REPO / path
        assert page.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in _anchors(page), f"README links to {path}#{anchor}: no such heading"


def _nav_pages() -> list[str]:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:\n") : config.index("\nmarkdown_extensions:")]
    return re.findall(r"^\s+- (?:[^:\n]+: )?([\w./-]+\.md)$", nav, re.M)


def test_every_docs_page_is_in_the_nav() -> None:
    nav = _nav_pages()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, "every page in docs/ appears in mkdocs.yml's nav exactly once, and no other"
    assert len(nav) == len(set(nav))
    assert {"compatibility.md", "format.md", "cli.md", "api.md"} <= set(nav)


def test_the_cli_and_api_references_are_generated() -> None:
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert "::: mkdocs-click" in cli and ":module: ductaflow.cli" in cli and ":command: cli" in cli
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    import ductaflow

    documented = set(re.findall(r"^::: ductaflow(?:\.[\w.]+)?\.(\w+)$", api, re.M))
    errors = set(re.findall(r"^        - (\w+)$", api, re.M))
    missing = set(ductaflow.__all__) - documented - errors - {"__version__"}
    assert not missing, f"docs/api.md does not document {sorted(missing)}"


def _hint_sources() -> list[Path]:
    return [*sorted((REPO / "ductaflow").rglob("*.py")), *sorted(DOCS.rglob("*.md")), README, REPO / "mkdocs.yml"]


@pytest.mark.parametrize("path", _hint_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_install_hints_have_one_spelling(path: Path) -> None:
    """``pip install 'ductaflow[<extra>]'``, naming an extra that exists: in errors, README and docs."""
    text = path.read_text(encoding="utf-8")
    if path == README:
        text = text.replace(_section(text, "commands"), "")  # the set-up commands install the checkout itself
    extras = _extras()
    for match in re.finditer(r"pip install[^\n`)]*\[", text):
        line = text[match.start() : text.index("\n", match.start())]
        hint = HINT.match(line)
        assert hint, (
            f"{path.relative_to(REPO)}: install hint {line.strip()!r} is not spelled pip install 'ductaflow[<extra>]'"
        )
        assert hint.group(1) in extras | PLACEHOLDERS, f"{path.relative_to(REPO)}: no extra named {hint.group(1)!r}"
