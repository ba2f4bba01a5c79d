"""The traffic-light rule (``ductaflow.core.lights``): the 15-character warning rule, Python's
warnings lines and the classification of an execution's facts."""

from __future__ import annotations

import warnings

import pytest

from ductaflow.core.lights import (
    WARNING_PREFIX_CHARS,
    Status,
    classify,
    is_python_warning_line,
    is_warning_line,
    warning_lines,
)


def test_the_prefix_is_fifteen_characters() -> None:
    assert WARNING_PREFIX_CHARS == 15


@pytest.mark.parametrize(
    "line",
    [
        "Warning: calibration did not converge",
        "WARNING: loud",
        "warning:quiet",
        "⚠ low demand",
        "   ⚠ indented",
        "x" * 14 + "⚠ the marker is the 15th character",
        "1234567warning: ends exactly at character 15",
        "[s3] Warning: prefixed",
        "⚠",
    ],
)
def test_lines_with_a_marker_in_the_first_15_characters_warn(line: str) -> None:
    assert is_warning_line(line)


@pytest.mark.parametrize(
    "line",
    [
        "x" * 15 + "⚠ the marker is the 16th character",
        "12345678warning: its colon is the 16th character",
        "all good, no warning: here",
        "warnings are fine",
        "Warning - no colon",
        "DeprecationWarning: the marker 'warning:' only starts at character 12",
        "",
        " " * 15 + "⚠ after 15 spaces",
        "[step 3] Warning: the marker ends at character 17",
    ],
)
def test_lines_without_a_marker_in_the_first_15_characters_do_not(line: str) -> None:
    assert not is_warning_line(line)


def test_warning_lines_keeps_the_warning_lines_without_their_line_ends() -> None:
    lines = ["starting\n", "Warning: one\r\n", "fine\n", "⚠ two\n", "much later: Warning: too late\n"]
    assert warning_lines(lines) == ["Warning: one", "⚠ two"]
    assert warning_lines(iter(lines)) == ["Warning: one", "⚠ two"]


def _formatted(category: type[Warning], message: str = "careful") -> str:
    return warnings.formatwarning(message, category, "/path/to/flow.py", 12).splitlines()[0]


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, RuntimeWarning, FutureWarning])
def test_python_warnings_lines_are_recognised(category: type[Warning]) -> None:
    line = _formatted(category)
    assert line == f"/path/to/flow.py:12: {category.__name__}: careful"
    assert is_python_warning_line(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/x/y.py:3: numpy.exceptions.VisibleDeprecationWarning: ragged", True),
        ("<ipython-input-1-abc>:7: SettingWithCopyWarning: a value", True),
        ("C:\\proj\\flow.py:120: MyCustomWarning: custom categories too", True),
        ("UserWarning: no file and line", False),
        ("/x/y.py: UserWarning: no line number", False),
        ("/x/y.py:3: UserWarning no colon after the category", False),
        ("/x/y.py:3: UserError: not a warning category", False),
        ("/x/y.py:3: UserWarning: To exit: use 'exit', 'quit', or Ctrl-D.", False),  # IPython's sys.exit notice
        ("plain text", False),
    ],
)
def test_python_warning_line_shapes(line: str, expected: bool) -> None:
    assert is_python_warning_line(line) is expected


@pytest.mark.parametrize("flag", ["raised", "kernel_died", "timed_out", "interrupted"])
def test_any_failure_is_red_even_with_warnings(flag: str) -> None:
    assert classify(**{flag: True}) is Status.RED
    assert classify(**{flag: True}, warnings=["Warning: x"]) is Status.RED


def test_warnings_make_orange_and_nothing_makes_green() -> None:
    assert classify() is Status.GREEN
    assert classify(warnings=[]) is Status.GREEN
    assert classify(warnings=(w for w in [])) is Status.GREEN
    assert classify(warnings=["Warning: one"]) is Status.ORANGE
    assert classify(warnings=(w for w in ["⚠"])) is Status.ORANGE


def test_status_orders_worst_last_and_prints_its_value() -> None:
    assert Status.worst() is Status.GREEN
    assert Status.worst("green", None, "orange") is Status.ORANGE
    assert Status.worst(Status.ORANGE, "red", "green") is Status.RED
    assert [s.rank for s in (Status.GREEN, Status.ORANGE, Status.RED)] == [0, 1, 2]
    assert str(Status.RED) == "red" and f"{Status.ORANGE}" == "orange"
    assert Status("green").emoji == "🟢" and Status.RED.emoji == "🔴"
    with pytest.raises(ValueError):
        Status("amber")
