"""Helpers for the reliability suite: a project holding good and bad flows plus earlier evidence,
the ``ductaflow`` command run in-process or as a process, and byte-exact snapshots of a tree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report_fixtures import write_record

GOOD = """
# %%
import json
from pathlib import Path
from ductaflow import flow_config
config = flow_config(config, "config/flows/good.json")

# %%
Path("seen.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
print("n =", config.get("n"))
"""

PIPE = """
# %%
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/pipe.json")

# %%
step("flows/good.py", "good", {"n": config["n"]})
"""

FLOWS = {
    "noparams.py": "# %%\nconfig = {}\n\n# %%\nprint(config)\n",
    "twoparams.py": '# %% tags=["parameters"]\nconfig = {}\n\n# %% tags=["parameters"]\nx = 1\n\n# %%\nprint(x)\n',
    "broken.py": '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nx = 1\n\n# %%\nif x = 2:\n    pass\n',
    "notes.txt": '# %% tags=["parameters"]\nconfig = {}\n',
    "empty.py": "",
}


def make_project(base: Path, name: str = "proj") -> Path:
    """A project: ``good`` flow, ``pipe`` build, broken flows, and earlier runs that must survive."""
    root = base / name
    for sub in ("flows", "builds", "config/flows", "config/builds", "bad"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("")
    (root / "flows" / "good.py").write_text(f'# %% tags=["parameters"]\nconfig = {{}}\n{GOOD}', encoding="utf-8")
    (root / "builds" / "pipe.py").write_text(f'# %% tags=["parameters"]\nconfig = {{}}\n{PIPE}', encoding="utf-8")
    (root / "config" / "flows" / "good.json").write_text('{"n": 1}')
    (root / "config" / "builds" / "pipe.json").write_text('{"n": 1}')
    for file, text in FLOWS.items():
        (root / "flows" / file).write_text(text, encoding="utf-8")
    broken_build = PIPE.replace('"flows/good.py", "good"', '"flows/broken.py", "broken"')
    (root / "builds" / "pipe_broken.py").write_text(f'# %% tags=["parameters"]\nconfig = {{}}\n{broken_build}')
    # Earlier evidence: a flow instance, a build instance with a flow inside, the runs root marker.
    runs = root / "runs"
    write_record(runs / "good" / "keep", "good", "green")
    (runs / "good" / "keep" / "seen.json").write_text('{"n": 1}')
    write_record(runs / "pipe" / "old", "pipe", "green")
    write_record(runs / "pipe" / "old" / "runs" / "good", "good", "orange", warnings=("Warning: kept",))
    (runs / ".ductaflow" / "ledger").mkdir(parents=True)
    return root


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """A scenario CSV written with the csv module (quoting handled)."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``root``: kind, size, mtime and content hash (links: their target)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two snapshots, as short lines."""
    lines = [f"+ {k}" for k in sorted(after.keys() - before.keys())]
    lines += [f"- {k}" for k in sorted(before.keys() - after.keys())]
    lines += [f"~ {k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return lines


@dataclass
class Ran:
    """A finished command: exit code and what it printed."""

    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        """The error message without the ``ductaflow: error:`` prefix, on one line."""
        text = self.err.strip().removeprefix("ductaflow: error: ").removeprefix("error: ")
        return " ".join(text.split())


def cli(*args: str, cwd: Path) -> Ran:
    """``ductaflow ARGS`` through its console-script entry point, in this process (fast: no import)."""
    from ductaflow.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return Ran(code, out.getvalue(), err.getvalue())


def process(*argv: str, cwd: Path, timeout: float = 120) -> Ran:
    """A real process (``python -m ductaflow ...`` or ``python flows/x.py ...``)."""
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def assert_rejected(ran: Ran, root: Path, before: dict[str, Any], *culprits: str) -> str:
    """Exit 2, one error message naming every culprit, no traceback, nothing on disk changed."""
    __tracebackhide__ = True
    assert ran.code == 2, (ran.code, ran.out, ran.err)
    assert ran.err.count("error:") == 1, ran.err
    assert ran.err.lstrip().startswith(("ductaflow: error: ", "error: ")), ran.err
    assert "Traceback" not in ran.err + ran.out, ran.err
    for culprit in culprits:
        assert culprit in ran.err, (culprit, ran.err)
    changed = diff(before, snapshot(root))
    assert not changed, f"bad input changed the disk: {changed}"
    return ran.message


def outcome(ran: Ran, limit: int = 220) -> str:
    """'exit 2: <message>' shortened for the table."""
    msg = ran.message
    if len(msg) > limit:
        msg = msg[: limit - 1] + "…"
    return f"exit {ran.code}, nothing on disk changed: {msg}"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


#: Values a flow must see exactly as written: quotes, newlines, backslashes, unicode, numbers.
TRICKY = {
    "quotes": "single ' double \" triple \"\"\" and '''",
    "newlines": "line1\nline2\r\nline3\rend\n",
    "backslashes": "C:\\Users\\new\\table \\\\ \\n is not a newline \\",
    "unicode": "é ü 中文 🚀 \u202eRTL\u202c \u2028 \u2029 \u0085 zero\u200bwidth",
    "control": "nul\x00 bell\x07 esc\x1b tab\t",
    "template": "{{7*7}} ${x} %s {0} %(a)s",
    "padded": "  padded  ",
    "empty": "",
    "numbers": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 2**63, -(2**70), 12345678901234567890123456789],
    "nested": {"a-b c": ["x", 1, 2.5, True, None, {"é": "\\"}]},
}


def same(a: object, b: object) -> bool:
    """Exact JSON equality: -0.0 differs from 0.0, 1 from 1.0 and from True."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


#: A payload that a real run carries into the report: scenario value, warning line and metric.
REAL_PAYLOAD = "<img src=x onerror=\"window.__pwned='real run'\">"
UNICODE_BUILD = "démo build"
UNICODE_FLOW = "modèle de démo"

_UNICODE_BUILD_SRC = f"""# %% tags=["parameters"]
config = {{}}

# %%
import json
from pathlib import Path
from ductaflow import flow_config, step
config = flow_config(config, "config/builds/{UNICODE_BUILD}.json")
Path("build_seen.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")

# %%
step("flows/{UNICODE_FLOW}.py", "modele", {{"tricky": config["tricky"], "label": config["label"]}})
"""

_UNICODE_FLOW_SRC = """# %% tags=["parameters"]
config = {}

# %%
import json
from pathlib import Path
from ductaflow import record
Path("seen.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
print(f"Warning: label is {config['label']}")
record(trips=1234.5, label=config["label"])
"""


@dataclass
class UnicodeRun:
    """The outcome of :func:`run_unicode_project`."""

    project: Path
    runs: Path
    ran: Ran
    seconds: float

    @property
    def instance(self) -> Path:
        return self.runs / UNICODE_BUILD / "base"


def run_unicode_project(base: Path) -> UnicodeRun:
    """``ductaflow conduct`` in a project dir, build, flow and runs root full of spaces and accents."""
    import time

    root = base / "projet d'été ü"
    for sub in ("flows", "builds", "config/builds"):
        (root / sub).mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "builds" / f"{UNICODE_BUILD}.py").write_text(_UNICODE_BUILD_SRC, encoding="utf-8")
    (root / "flows" / f"{UNICODE_FLOW}.py").write_text(_UNICODE_FLOW_SRC, encoding="utf-8")
    defaults = {"tricky": TRICKY, "label": "default"}
    (root / "config" / "builds" / f"{UNICODE_BUILD}.json").write_text(json.dumps(defaults), encoding="utf-8")
    write_csv(root / "scén arios.csv", ["scenario_name", "label"], [["base", REAL_PAYLOAD]])
    t0 = time.monotonic()
    ran = process(
        "-m", "ductaflow", "conduct", "scén arios.csv", "--build", f"builds/{UNICODE_BUILD}.py",
        "--runs-root", "sorties été", "--parallel", "1", cwd=root, timeout=180,
    )  # fmt: skip
    return UnicodeRun(root, root / "sorties été", ran, time.monotonic() - t0)
