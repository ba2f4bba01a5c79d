"""Text of any origin placed in Markdown as text: never markup, never HTML.

A config value, a flow name or a key may hold backticks, pipes, ``<``, ``&``; put in Markdown
as they are they could end a code span, split a table row or become raw HTML (which a notebook
rendered as a web page would run). These helpers are what ``display_config_summary`` uses.
"""

from __future__ import annotations

import re

#: Every ASCII punctuation character: CommonMark lets each be escaped with a backslash.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md_text(text: str) -> str:
    """``text`` on one line with every ASCII punctuation character backslash-escaped: shows as it is."""
    return _PUNCTUATION.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def md_cell(text: str) -> str:
    """``text`` for a Markdown table cell: a code span when nothing in it can end the span or
    split the row (no backtick, no pipe), else :func:`md_text`."""
    flat = text.replace("\r", " ").replace("\n", " ")
    return f"`{flat}`" if "`" not in flat and "|" not in flat else md_text(flat)
