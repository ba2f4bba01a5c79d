"""ductaflow's benchmark suite: papermill vs ductaflow vs a plain process, side by side.

    python bench/run.py [--quick] [--only NAME ...] [--write | --no-write]

Runs the benchmarks below in one invocation, prints a table of medians, min-max and
ratios, checks the targets of issues 6 and 13, and writes the results into the generated section
of BENCHMARKS.md (a full run does by default; ``--quick`` and ``--only`` runs do not unless
``--write`` is given). Every benchmark works in temporary directories and records the load
average before and after it. Run by hand, never in the test suite.

    trivial  (a) papermill loop, (b) run_notebook loop and conductor, (c) python flow.py
    pandas   the same for a flow that imports pandas and numpy
    single   (d) one flow as a CLI process: ductaflow run vs papermill
    rerun    (e) the example conductor's no-op re-run vs its first run
    report   (f) write_report and ductaflow status over 10,000 synthetic instances
    rss      (g) the conductor parent's peak RSS at 100 vs 1,000 scenarios
    anatomy  where one flow's time goes: imports, kernel start, execution, shutdown
    scale    (i) per-scenario overhead of conduct() at 100, 1,000 and 10,000 trivial scenarios (~30 min)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from common import ROOT, Row, Section, fmt_load, kill_leftovers, machine
from suites import SUITES, Settings

BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN = "<!-- BEGIN bench/run.py output: generated, do not edit by hand -->"
END = "<!-- END bench/run.py output -->"


@dataclass(frozen=True)
class Target:
    """A goal from an issue (6 or 13): a ratio (or an absolute value) of measured rows against a limit."""

    label: str
    key: str
    ref: str | None
    limit: float
    at_least: bool  # True: value must be >= limit; False: value must be <= (or <) limit
    fmt: str = "x"  # "x" ratio, "%" percentage, "s" seconds


TARGETS = [
    Target(
        "trivial flows, conductor on 2 workers >= 5x papermill loop (stretch 10x)",
        "trivial.conduct",
        "trivial.papermill",
        5.0,
        True,
    ),
    Target(
        "pandas+numpy flows with preload, conductor on 2 workers >= 10x papermill loop",
        "pandas_numpy.conduct_preload",
        "pandas_numpy.papermill",
        10.0,
        True,
    ),
    Target(
        "single `ductaflow run` wall time <= 0.5x `papermill` CLI", "single.ductaflow", "single.papermill", 0.5, False
    ),
    Target(
        "issue 13: single `ductaflow run` wall time <= 0.6x `papermill` CLI, with no import tricks",
        "single.ductaflow",
        "single.papermill",
        0.6,
        False,
    ),
    Target(
        "no-op re-run of the example conductor <= 5 % of its first run", "rerun.noop", "rerun.first", 0.05, False, "%"
    ),
    Target("report for 10,000 instances < 1 s", "report.warm", None, 1.0, False, "s"),
    Target(
        "conductor parent RSS at 1,000 scenarios <= 1.2x at 100", "rss.uptodate.large", "rss.uptodate.small", 1.2, False
    ),
    Target(
        "per-scenario overhead of conduct() at 10,000 scenarios within 20 % of at 100",
        "scale.large",
        "scale.small",
        1.2,
        False,
    ),
]


def fmt_num(value: float) -> str:
    """A measurement with about three significant digits."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio_text(row: Row, rows: dict[str, Row]) -> str:
    """The row's median over its reference row's median, as ``1.23x`` or ``4.5 %``."""
    ref = rows.get(row.ref or "")
    if ref is None or not row.samples or not ref.samples:
        return ""
    ratio = row.median / ref.median
    return f"{ratio:.1%}" if row.percent else f"{ratio:.2f}x"


def table(sections: list[Section]) -> str:
    """The results as a fixed-width text table, one block per benchmark group."""
    rows = {r.key: r for sec in sections for r in sec.rows}
    head = f"{'':50} {'median':>9} {'min-max':>17} {'unit':<8} {'ratio':>7}  note"
    lines = [head, "-" * len(head)]
    for sec in sections:
        lines.append(sec.title)
        ref_names = {rows[r.ref].label for r in sec.rows if r.ref in rows}
        for row in sec.rows:
            spread = f"{fmt_num(min(row.samples))}-{fmt_num(max(row.samples))}" if row.samples else "-"
            ratio = _ratio_text(row, rows)
            label = row.label if len(row.label) <= 48 else row.label[:47] + "~"
            lines.append(f"  {label:48} {fmt_num(row.median):>9} {spread:>17} {row.unit:<8} {ratio:>7}  {row.note}")
        if ref_names:
            lines.append(f"  (ratio: median over the median of {'; '.join(sorted(ref_names))})")
    return "\n".join(lines)


def _target_value(t: Target, rows: dict[str, Row]) -> float | None:
    row = rows.get(t.key)
    if row is None or not row.samples:
        return None
    if t.ref is None:
        return row.median
    ref = rows.get(t.ref)
    return row.median / ref.median if ref is not None and ref.samples else None


def targets(sections: list[Section], settings: Settings) -> list[str]:
    """One line per target: measured value, limit, and MET / NOT MET (or why not checked)."""
    rows = {r.key: r for sec in sections for r in sec.rows}
    groups = {r.group for sec in sections for r in sec.rows}
    out = []
    for t in TARGETS:
        if t.key.split(".")[0] not in groups:
            continue  # its benchmark was not part of this run
        value = _target_value(t, rows)
        if value is None:
            out.append(f"  not run   {t.label}")
            continue
        shown = f"{value:.1%}" if t.fmt == "%" else f"{value:.2f} s" if t.fmt == "s" else f"{value:.2f}x"
        met = value >= t.limit if t.at_least else value <= t.limit
        verdict = "MET    " if met else "NOT MET"
        if t.key == "report.warm" and settings.instances < 10_000:
            verdict = "n/a    "
            shown += f" at {settings.instances:,} instances (quick run; the target is for 10,000)"
        if t.key == "scale.large" and (min(settings.scale) > 100 or max(settings.scale) < 10_000):
            verdict = "n/a    "
            sizes = f"{min(settings.scale):,} vs {max(settings.scale):,}"
            shown += f" at {sizes} (resized run; the target is 10,000 vs 100)"
        out.append(f"  {verdict}   {t.label}: measured {shown}")
    return out


def findings(sections: list[Section]) -> list[str]:
    """Where the time goes, derived from the rows that were measured (what the engine work needs)."""
    rows = {r.key: r for sec in sections for r in sec.rows}

    def med(key: str) -> float | None:
        row = rows.get(key)
        return row.median if row is not None and row.samples else None

    out = []
    life, ready, spawn = med("anatomy.total"), med("anatomy.ready"), med("anatomy.spawn")
    for kind in ("trivial", "pandas_numpy"):
        pm, seq, cond = med(f"{kind}.papermill"), med(f"{kind}.run_notebook"), med(f"{kind}.conduct")
        spawn_loop = med(f"{kind}.spawn")
        if pm and seq and cond and spawn_loop:
            line = (
                f"{kind}, wall time per flow: papermill loop {1 / pm:.2f} s; run_notebook loop {1 / spawn_loop:.2f} s "
                f"launching kernels, {1 / seq:.2f} s forking them; conductor on {Settings().workers} workers "
                f"{1 / cond:.2f} s forking"
            )
            seqp, condp = med(f"{kind}.run_notebook_preload"), med(f"{kind}.conduct_preload")
            if seqp and condp:
                line += f"; with numpy and pandas preloaded: loop {1 / seqp:.2f} s, conductor {1 / condp:.2f} s"
            out.append(line)
    if life and ready is not None and spawn is not None:
        out.append(
            f"a bare kernel's whole life (trivial cells, immediate shutdown) is {life:.2f} s, of which "
            f"{spawn + ready:.2f} s is start-up to ready and {med('anatomy.execute') or 0:.3f} s running the cells"
        )
        flife, fready, fstart = med("anatomy.fork_total"), med("anatomy.fork_ready"), med("anatomy.fork_start")
        if flife and fready is not None and fstart is not None:
            out.append(
                f"a kernel forked from a warm template lives {flife:.2f} s for the same cells, of which "
                f"{fstart + fready:.2f} s is start-up to ready ({(spawn + ready) / (fstart + fready):.1f}x less)"
            )
        seq = med("trivial.run_notebook")
        if seq:
            out.append(
                f"a run_notebook loop (forking; pre-started kernels from the third flow on) takes {1 / seq:.2f} s "
                f"per trivial flow, against a bare launched kernel's {life:.2f} s"
            )
    grace, now = med("anatomy.shutdown_graceful"), med("anatomy.shutdown_now")
    if grace is not None and now is not None:
        out.append(f"graceful kernel shutdown {grace:.3f} s vs immediate {now:.3f} s (papermill's default is graceful)")
    imp, floor = med("anatomy.pandas_execute"), med("anatomy.execute")
    if imp is not None and floor is not None:
        out.append(f"importing numpy+pandas in each fresh kernel costs {imp - floor:.2f} s per flow")
    skip = med("anatomy.skip")
    if skip is not None:
        out.append(f"ductaflow's per-run bookkeeping without a kernel (up-to-date skip): {skip * 1000:.0f} ms")
    rep = next((s for s in sections if s.name == "report"), None)
    warm, collect = med("report.warm"), med("report.collect")
    if rep is not None and warm and collect is not None:
        n = rep.extra["instances"]
        out.append(
            f"write_report over {n:,} instances: {warm:.2f} s ({warm / n * 1000:.2f} ms per instance), "
            f"{collect / warm:.0%} of it reading records; the page is {rep.extra['mib']:.1f} MiB. The conductor "
            f"rewrites the live report at a pace set by this cost"
        )
    scale = next((s for s in sections if s.name == "scale"), None)
    if scale is not None and all(r.samples for r in scale.rows):
        by_size = zip(scale.extra["sizes"], scale.rows, strict=True)
        shown = "; ".join(f"{n:,}: {r.median:.0f} ms" for n, r in by_size)
        out.append(f"conduct(), wall time per trivial scenario on {Settings().workers} workers by table size: {shown}")
    single, py, dfi = med("single.ductaflow"), med("single.script"), med("anatomy.import_ductaflow")
    if single and py and dfi:
        out.append(
            f"`ductaflow run` {single:.2f} s = interpreter + `import ductaflow.run.execute` ({dfi:.2f} s) + a kernel "
            f"+ records; `python flow.py` {py:.2f} s"
        )
    return out


def render(sections: list[Section], settings: Settings, info: dict[str, Any], elapsed: float) -> dict[str, str]:
    """Every printed/written part as text: machine, table, targets, loads, findings, notes."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    machine_text = "\n".join(
        [
            f"date:     {info['date']} (commit {info['commit']})",
            f"cpu:      {info['cpu']}",
            f"ram:      {info['ram']}; {info['os']}",
            f"python:   {info['python']}",
            f"packages: {versions}",
            f"bytecode: {info['bytecode']}",
            f"run:      {'--quick' if settings.quick else 'full'}, {elapsed / 60:.1f} min in all",
        ]
    )
    cores = os.cpu_count() or 1
    busy = [s.name for s in sections if max(s.load_before[0], s.load_after[0]) > cores]
    load_lines = [f"{'benchmark':12} {'before (1/5/15 min)':>22} {'after (1/5/15 min)':>22} {'wall':>8}"]
    load_lines.append(f"{'(start)':12} {fmt_load(info['load_start']):>22}")
    for s in sections:
        load_lines.append(f"{s.name:12} {fmt_load(s.load_before):>22} {fmt_load(s.load_after):>22} {s.seconds:7.0f}s")
    load_lines.append(
        f"The suite itself keeps one core busy (two for the conductor), so a 1-min load up to the core count ({cores}) "
        "can be its own."
    )
    if busy:
        load_lines.append(
            f"BUSY MACHINE: the 1-min load average exceeded the {cores} core(s) around {', '.join(busy)}: other work "
            "competed for the CPU, so these figures are pessimistic and their ratios noisy."
        )
    notes, seen = [], {}
    for s in sections:
        for n in s.notes:
            notes.append(f"- {s.title}: {n}" if n not in seen else f"- {s.title}: as for {seen[n]}.")
            seen.setdefault(n, s.name)
    return {
        "machine": machine_text,
        "table": table(sections),
        "targets": "\n".join(targets(sections, settings)),
        "loads": "\n".join(load_lines),
        "findings": "\n".join(f"- {line}" for line in findings(sections)),
        "notes": "\n".join(notes),
    }


def markers(only: list[str] | None) -> tuple[str, str]:
    """The markers around a generated block: the full run's, or a block of its own for a partial
    run (``--only a b``), so writing one suite's figures never drops the other suites' rows."""
    if not only:
        return BEGIN, END
    names = " ".join(only)
    return (
        f"<!-- BEGIN bench/run.py --only {names} output: generated, do not edit by hand -->",
        f"<!-- END bench/run.py --only {names} output -->",
    )


def markdown(parts: dict[str, str], only: list[str] | None = None) -> str:
    """A generated block of BENCHMARKS.md: the full run's section, or a partial run's own block."""
    begin, end = markers(only)
    command = "python bench/run.py" + (f" --only {' '.join(only)} --write" if only else "")
    title = "## Benchmark suite" if not only else f"## Benchmark suite, partial run: {', '.join(only)}"
    return "\n".join(
        [
            begin,
            f"{title} (`{command}`)",
            "",
            f"Generated by `{command}`; replace it by running that again, not by editing.",
            "",
            "```text",
            parts["machine"],
            "```",
            "",
            "### Results",
            "",
            "```text",
            parts["table"],
            "```",
            "",
            "### Targets (issues 6 and 13)",
            "",
            "```text",
            parts["targets"],
            "```",
            "",
            "### Load average around each benchmark",
            "",
            "```text",
            parts["loads"],
            "```",
            "",
            "### Where the time goes",
            "",
            parts["findings"] or "- (anatomy not run)",
            "",
            "### What was measured",
            "",
            parts["notes"],
            "",
            end,
        ]
    )


def write_benchmarks(section: str, only: list[str] | None = None) -> None:
    """Replace a generated block of BENCHMARKS.md; a new full section goes before the first
    ``## ``, a new partial block right after the full section (or at the end)."""
    begin, end = markers(only)
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    elif only and END in text:
        head, rest = text.split(END, 1)
        text = head + END + "\n\n" + section + "\n" + rest
    else:
        at = text.find("\n## ") if not only else -1
        text = (
            text.rstrip("\n") + "\n\n" + section + "\n"
            if at < 0
            else text[: at + 1] + section + "\n\n" + text[at + 1 :]
        )
    BENCHMARKS.write_text(text, encoding="utf-8")


def main() -> None:
    """Parse the command line, run the chosen benchmarks in order, print and write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="benchmarks:\n" + __doc__[__doc__.index("    trivial") :],
    )
    parser.add_argument("--quick", action="store_true", help="small N, one repeat: a fast check, figures indicative")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--flows", type=int, help="flows per repeat in trivial/pandas (default 20, quick 4)")
    parser.add_argument("--repeats", type=int, help="repeats of each measurement (default 3, quick 1)")
    parser.add_argument("--instances", type=int, help="synthetic instances for report (default 10,000, quick 1,000)")
    parser.add_argument("--scale", type=int, nargs="+", help="table sizes for scale (default 100 1000 10000)")
    write = parser.add_mutually_exclusive_group()
    write.add_argument("--write", action="store_true", help="write BENCHMARKS.md even for a quick or partial run")
    write.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()

    settings = Settings.quick_settings() if args.quick else Settings()
    sizes = tuple(args.scale) if args.scale else None
    overrides = {"flows": args.flows, "repeats": args.repeats, "instances": args.instances, "scale": sizes}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    chosen = args.only or list(SUITES)
    info = {**machine(), "load_start": os.getloadavg()}
    print(f"ductaflow benchmarks: {', '.join(chosen)} ({'quick' if settings.quick else 'full'} run)", file=sys.stderr)
    sections: list[Section] = []
    t0 = time.perf_counter()
    try:
        for name in chosen:
            print(f"[{name}] load {fmt_load(os.getloadavg())} ...", file=sys.stderr, flush=True)
            sections.append(SUITES[name](settings))
            print(f"[{name}] done in {sections[-1].seconds:.0f} s", file=sys.stderr, flush=True)
    finally:
        left = kill_leftovers()
        if left:
            print(f"killed {left} leftover process(es) started by the benchmarks", file=sys.stderr)
    parts = render(sections, settings, info, time.perf_counter() - t0)
    for title, key in (
        ("machine", "machine"),
        ("results", "table"),
        ("targets (issues 6 and 13)", "targets"),
        ("load average", "loads"),
        ("where the time goes", "findings"),
    ):
        print(f"\n== {title}\n{parts[key]}")
    partial = settings.quick or bool(args.only) or any(v is not None for v in overrides.values())
    if args.no_write or (partial and not args.write):
        print("\nBENCHMARKS.md not written (quick, partial or resized run; --write to write anyway)")
    else:
        only = args.only if args.only and set(args.only) != set(SUITES) else None
        write_benchmarks(markdown(parts, only), only)
        print(f"\nwrote {BENCHMARKS}")


if __name__ == "__main__":
    main()
