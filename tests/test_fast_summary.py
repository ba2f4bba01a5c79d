"""``ductaflow summary``: the markdown of a hand-written search, the command's defaults and errors,
and reading a state file that a writer keeps replacing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from report_fixtures import write_state
from search_fixtures import BUILD, METRIC, node, search_state, write_search

from ductaflow.cli import cli
from ductaflow.report.spec import ReportSpec
from ductaflow.report.summary import best, code, md, spec_of, summary_markdown, tree
from ductaflow.store.sweeps import read_sweep_state, write_sweep_state


def _section(text: str, title: str) -> list[str]:
    """The lines of the markdown section whose heading starts with ``title`` (blank lines dropped)."""
    body = text.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines()[1:] if line.strip()]


def test_tree_is_indented_by_lineage_with_light_metric_retries_and_kind() -> None:
    text = summary_markdown(search_state(), metric=METRIC)
    assert _section(text, "Search tree") == [
        "- `a` 🟢 green · mean_trip_length 12",
        "  - `a1` 🟢 green · mean_trip_length 10 · 2 retries",
        "    - `a1x` 🔴 red · mean_trip_length 1 · user_error",
        "    - `a1y` 🟢 green · mean_trip_length 10",
        "    - `a1z` 🔵 running",
        "  - `a2` 🟠 orange · mean_trip_length 11",
        "    - `a2q` ⚪ queued",
        "    - `a2n` ⚫ not run (budget)",
        "- `b` 🔴 red · mean_trip_length – · 1 retry · kernel_died",
        "- `c` 🔴 red · mean_trip_length – · kernel_died",
    ]


def test_counts_per_light_and_state_and_the_budget() -> None:
    text = summary_markdown(search_state())
    assert _section(text, "Scenarios") == [
        "| light / state | count |", "|---|---:|", "| 🟢 green | 3 |", "| 🟠 orange | 1 |", "| 🔴 red | 3 |",
        "| 🔵 running | 1 |", "| ⚪ queued | 1 |", "| ⚫ not run | 1 |", "| total | 10 |",
        "1 scenario left unrun by the run budget (max_runs).",
    ]  # fmt: skip
    assert "- runs started: 7 of at most 8" in text and "- duplicate follow-ups not run again: 2" in text
    assert text.startswith("# Sweep `s1`\n") and "- state: **running**" in text


def test_best_by_metric_lowest_first_ties_in_submission_order_and_red_left_out() -> None:
    text = summary_markdown(search_state(), metric=METRIC, top=3)
    assert _section(text, "Best 3 by `mean_trip_length` (lowest first)") == [
        "| # | scenario | light | mean_trip_length | g |", "|---:|---|---|---:|---:|",
        "| 1 | `a1` | 🟢 green | 10 | 2 |", "| 2 | `a1y` | 🟢 green | 10 | 5 |", "| 3 | `a2` | 🟠 orange | 11 | 3 |",
    ]  # fmt: skip
    assert [n.instance for n in best(search_state(), METRIC, True, 10)] == ["a", "a2", "a1", "a1y"]


def test_the_metric_and_its_direction_default_to_the_report_settings() -> None:
    text = summary_markdown(search_state(), spec=ReportSpec(maximize=(METRIC,)), top=1)
    assert _section(text, "Best 1 by `mean_trip_length` (highest first)")[2] == "| 1 | `a` | 🟢 green | 12 | 0 |"
    forced = summary_markdown(search_state(), spec=ReportSpec(maximize=(METRIC,)), maximize=False, top=1)
    assert "(lowest first)" in forced
    none = summary_markdown(search_state())
    assert "No metric chosen: pass --metric NAME (recorded: `mean_trip_length`, `trips`)." in none
    assert "No finished green or orange scenario recorded `nope`" in summary_markdown(search_state(), metric="nope")


def test_failures_are_grouped_by_kind_most_first() -> None:
    assert _section(summary_markdown(search_state()), "Failures by kind") == [
        "| kind | count | scenarios |", "|---|---:|---|", "| kernel_died | 2 | `b`, `c` |",
        "| user_error | 1 | `a1x` |",
    ]  # fmt: skip
    calm = search_state(nodes=(node("a", 0, state="done", status="green"),))
    assert _section(summary_markdown(calm), "Failures by kind") == ["None."]


def test_user_text_cannot_break_the_markdown() -> None:
    hostile = "x|y<script>alert(1)</script>\nz"
    state = search_state(nodes=(node("a`b", 0, state="done", status="green", values={"v|": hostile},
                                     metrics={METRIC: 1.0}),))  # fmt: skip
    text = summary_markdown(state, metric=METRIC)
    assert "<script>" not in text and "x\\|y&lt;script&gt;alert(1)&lt;/script&gt; z" in text
    assert "``a`b``" in text and "| v\\| |" in text
    assert md({"a": [1, 2]}) == '{"a":[1,2]}' and code("`x") == "`` `x ``"


def test_orphans_and_cycles_are_roots_and_the_walk_is_linear() -> None:
    nodes = (node("x", 0, "gone"), node("p", 1, "q"), node("q", 2, "p"), node("s", 3, "s"))
    assert [(d, n.instance) for d, n in tree(search_state(nodes=nodes))] == [(0, "x"), (0, "s"), (0, "p"), (1, "q")]
    chain = tuple(node(f"n{i}", i, f"n{i - 1}" if i else None, state="done", status="green") for i in range(20000))
    walked = tree(search_state(nodes=chain))  # a 20,000-deep bisection: no recursion, no quadratic scan
    assert len(walked) == 20000 and walked[-1] == (19999, chain[-1])


def test_cli_prints_the_latest_sweep_with_the_conductors_report_settings(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_search(runs, search_state("older"))
    write_search(runs)
    path = write_state(runs, BUILD, [], columns=[])
    doc = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**doc, "report": {"maximize": [METRIC]}}), encoding="utf-8")
    assert spec_of(runs, search_state()).maximize == (METRIC,)
    result = CliRunner().invoke(cli, ["summary", "--runs-root", str(runs), "--top", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Sweep `s1`\n")
    assert "## Best 2 by `mean_trip_length` (highest first)" in result.output
    named = CliRunner().invoke(cli, ["summary", "older", "--runs-root", str(runs), "--metric", "trips", "--min"])
    assert named.exit_code == 0 and "# Sweep `older`" in named.output and "by `trips` (lowest first)" in named.output


def test_an_unknown_sweep_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_search(runs)
    for args in (["nope"], []):
        where = runs if args else tmp_path / "empty"
        done = subprocess.run([sys.executable, "-m", "ductaflow", "summary", *args, "--runs-root", str(where)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith("ductaflow: error: no ")


def test_summary_reads_whole_states_while_a_writer_replaces_the_file(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = write_search(runs)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        state = first
        while not stop.is_set():
            extra = node(f"f{written[0]}", len(state.nodes), "a", state="done", status="green",
                         metrics={METRIC: 5.0})  # fmt: skip
            state = replace(state, nodes=(*state.nodes, extra), runs=state.runs + 1)
            write_sweep_state(runs, state)
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = []
        for _ in range(60):
            result = CliRunner().invoke(cli, ["summary", "--runs-root", str(runs), "--metric", METRIC])
            assert result.exit_code == 0, result.output
            seen.append(len([ln for ln in _section(result.output, "Search tree")]))
    finally:
        stop.set()
        thread.join(10)
    assert written[0] > 5 and seen[-1] > seen[0] >= 10  # it saw the search grow, whole every time
    assert len(read_sweep_state(runs).nodes) == 10 + written[0]
