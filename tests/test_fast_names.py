"""Names that become directories (``ductaflow.core.names``): instance names strict, components lenient."""

from __future__ import annotations

import pytest

from ductaflow.core.names import check_component, validate_name
from ductaflow.errors import InvalidName


@pytest.mark.parametrize("name", ["base", "g0.01_c1.0", "a=b+c-d", "0", "A" * 128, "run.2024-05-01", "x.y.z"])
def test_safe_names_pass_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is empty or has surrounding whitespace"),
        (" base", "is empty or has surrounding whitespace"),
        ("base\n", "is empty or has surrounding whitespace"),
        ("a/b", "must be a single directory name"),
        ("a\\b", "must be a single directory name"),
        ("..", "must be a single directory name"),
        ("../up", "must be a single directory name"),
        ("a..b", "must not contain '..'"),
        (".hidden", "is not allowed: use 1-128 characters"),
        ("-flag", "is not allowed"),
        ("_x", "is not allowed"),
        ("A" * 129, "is not allowed"),
        ("a b", "is not allowed"),
        ("été", "is not allowed"),
        ("a\x00b", "is not allowed"),
        ("a:b", "is not allowed"),
        ("con", "reserved device name on Windows"),
        ("NUL", "reserved device name on Windows"),
        ("COM1.txt", "reserved device name on Windows"),
        ("lpt9", "reserved device name on Windows"),
        ("name.", "ends with '.', which Windows drops \\(clashing with 'name'\\)"),
    ],
)
def test_unsafe_names_are_rejected_with_the_reason(name: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        validate_name(name)


def test_the_message_says_what_was_named_and_non_strings_are_refused() -> None:
    with pytest.raises(InvalidName, match=r"^step name 'a/b'"):
        validate_name("a/b", "step name")
    with pytest.raises(InvalidName, match="instance name must be a string, got int: 5"):
        validate_name(5)
    with pytest.raises(InvalidName, match="got NoneType"):
        validate_name(None)
    assert validate_name("console") == "console"  # only the device names themselves are reserved
    assert validate_name("com10") == "com10"


@pytest.mark.parametrize("name", ["my flow", "été", "a..b", ".hidden", "con", "x" * 300, "a:b"])
def test_check_component_accepts_any_single_file_name(name: str) -> None:
    assert check_component(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", None, 3])
def test_check_component_refuses_what_is_not_one_file_name(name: object) -> None:
    with pytest.raises(InvalidName, match="flow name .* is not a single file name"):
        check_component(name, "flow name")
