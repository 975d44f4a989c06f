"""Griffe extension for the mlsys site: ``Example:`` sections are read as ``Examples:``.

The packages' Google-style docstrings title their doctests ``Example:``; griffe parses only
``Examples:`` into code blocks (``Example:`` becomes an admonition whose ``>>>`` lines would be
rendered as Markdown prose, and their brackets as broken cross-references).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` before the docstring is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the header in ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
