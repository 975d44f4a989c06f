"""How results look in a notebook and convert to pandas: one table model, one renderer, one mixin.

Every tabular result of mlsys (metric results, comparisons, latency reports, evaluation reports)
describes itself as a :class:`DisplayTable` — a title, named columns, rows of plain values, the
column that identifies a row, and the protocol/configuration that produced it. From that one
description :func:`render_html` draws a compact HTML table (every string escaped; the protocol
folded away in a ``<details>`` element) and :func:`table_to_pandas` builds a data frame with the
values exactly as stored (no rounding: only the HTML is formatted). :class:`TabularDisplay` gives a
class ``_repr_html_`` (Jupyter's rich display hook) and ``to_pandas()`` from one ``_display_table``
method. pandas is optional: it is imported only inside :func:`table_to_pandas`, and its absence
raises :class:`~mlsys.common.errors.MissingDependencyError` naming the extra that installs it.

:func:`non_default_params` serves the short reprs of indexes and stores (only what differs from
the defaults); :func:`new_figure` builds matplotlib figures that display inline without pyplot.

Example:
    >>> t = DisplayTable("scores", ("system", "ndcg@10"), (("bm25", 0.5),), index="system")
    >>> "<td>0.5000</td>" in render_html(t)
    True
"""

from __future__ import annotations

import dataclasses
import functools
import html
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlsys.common._optional import import_optional
from mlsys.common.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas import DataFrame  # type: ignore[import-untyped]

__all__ = [
    "DisplayTable",
    "TabularDisplay",
    "format_params",
    "format_value",
    "new_figure",
    "non_default_params",
    "render_html",
    "table_to_pandas",
]

#: The extra that installs pandas for mlsys-common (each domain package names its own).
PANDAS_EXTRA = "mlsys-common[pandas]"


@dataclasses.dataclass(frozen=True)
class DisplayTable:
    """A result as a table: what :func:`render_html` draws and :func:`table_to_pandas` converts.

    Args:
        title: the caption (``"EvalResult: 2 queries"``).
        columns: column names, in order.
        rows: one tuple of plain values (str, int, float, bool, None) per row, aligned with
            ``columns``.
        index: the column that names a row (the frame's index), or ``None``.
        details: the protocol or configuration behind the numbers, ``(name, value)`` pairs; folded
            away in the HTML, kept in ``DataFrame.attrs`` by :func:`table_to_pandas`.
        notes: footnotes shown under the HTML table.

    Example:
        >>> t = DisplayTable("t", ("a", "b"), ((1, 2.0),))
        >>> t.records()
        [{'a': 1, 'b': 2.0}]
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    index: str | None = None
    details: tuple[tuple[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.columns)) != len(self.columns):
            raise InvalidInputError(f"duplicate column names in {list(self.columns)}")
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise InvalidInputError(
                    f"row {i} has {len(row)} values, expected {len(self.columns)} (columns {list(self.columns)})"
                )
        if self.index is not None and self.index not in self.columns:
            raise InvalidInputError(f"index {self.index!r} is not a column; columns: {list(self.columns)}")

    def records(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def format_value(value: Any) -> str:
    """How a cell reads in HTML: floats to 4 decimals (``.4g`` when tiny or huge), the rest as ``str``.

    Example:
        >>> format_value(0.695571), format_value(3), format_value(2.5e-05), format_value(float("nan"))
        ('0.6956', '3', '2.5e-05', 'nan')
    """
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size != 0.0 and (size < 1e-3 or size >= 1e6):
        return f"{value:.4g}"
    return f"{value:.4f}" if size < 10 else f"{value:.2f}"


# control characters are not allowed in HTML/XML text: shown as their escape sequence instead
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


def _visible(text: str) -> str:
    """``text`` with control characters written as escape sequences (``"\\x1f"``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _esc(text: object) -> str:
    return _visible(html.escape(str(text)))


def _cell(tag: str, value: Any) -> str:
    return f"<{tag}>{_esc(format_value(value))}</{tag}>"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _details_html(details: Iterable[tuple[str, Any]]) -> str:
    items = list(details)
    if not items:
        return ""
    rows = "".join(f"<tr><th>{_esc(str(k))}</th><td>{_esc(format_value(v))}</td></tr>" for k, v in items)
    names = ", ".join(_esc(str(k)) for k, _ in items[:4]) + (", ..." if len(items) > 4 else "")
    return f"<details><summary>{names}</summary><table>{rows}</table></details>"


#: rows shown by :func:`render_html` before it shortens a table (the frame keeps every row)
MAX_HTML_ROWS = 40


def render_html(table: DisplayTable, *, max_rows: int = MAX_HTML_ROWS) -> str:
    """``table`` as one compact, well-formed HTML fragment (a ``<div>`` holding a ``<table>``).

    Every column name, cell, title, note and detail is HTML-escaped; numbers are formatted by
    :func:`format_value`; ``details`` are folded into a ``<details>`` element. A table longer than
    ``max_rows`` shows its first and last rows around one ``... N more rows`` row, like pandas.

    Example:
        >>> t = DisplayTable("a <b>", ("x",), ((1.0,),))
        >>> render_html(t).count("&lt;b&gt;")
        1
    """
    head = "".join(f"<th>{_esc(str(c))}</th>" for c in table.columns)
    body = []
    rows: list[tuple[Any, ...] | None] = list(table.rows)
    if len(rows) > max_rows:
        head_n = max(1, max_rows - max_rows // 3)
        rows = [*rows[:head_n], None, *rows[len(rows) - (max_rows - head_n) :]]
    for row in rows:
        if row is None:
            body.append(
                f'<tr><td colspan="{len(table.columns)}">... {len(table.rows) - max_rows} more rows</td></tr>'
            )
            continue
        cells = "".join(
            _cell("th" if col == table.index else "td", v) for col, v in zip(table.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(f"<p><small>{_esc(n)}</small></p>" for n in table.notes)
    return (
        '<div class="mlsys-table">'
        f"<table><caption>{_esc(table.title)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{notes}{_details_html(table.details)}</div>"
    )


def table_to_pandas(table: DisplayTable, *, extra: str = PANDAS_EXTRA) -> DataFrame:
    """``table`` as a ``pandas.DataFrame``: the values as stored, ``index`` as the frame's index.

    ``details`` go to ``DataFrame.attrs`` (with ``"title"``). pandas is imported here only; when it
    is absent this raises :class:`~mlsys.common.errors.MissingDependencyError` naming ``extra``.

    Example:
        >>> t = DisplayTable("t", ("system", "ndcg@10"), (("bm25", 0.5),), index="system")
        >>> table_to_pandas(t).loc["bm25", "ndcg@10"]  # doctest: +SKIP
        np.float64(0.5)
    """
    pd = import_optional("pandas", extra=extra)
    frame = pd.DataFrame.from_records([tuple(r) for r in table.rows], columns=list(table.columns))
    if table.index is not None:
        frame = frame.set_index(table.index)
    frame.attrs["title"] = table.title
    frame.attrs.update(dict(table.details))
    return frame


class TabularDisplay:
    """Mixin: ``_repr_html_`` and ``to_pandas()`` from one ``_display_table()``.

    A subclass implements ``_display_table``; for a dataclass the default is one row of its
    scalar fields (numbers, strings, booleans, ``None``), every other field left out.
    ``_pandas_extra`` names the extra of the subclass's package in the missing-pandas error.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Score(TabularDisplay):
        ...     name: str
        ...     value: float
        >>> "<td>0.2500</td>" in Score("a", 0.25)._repr_html_()
        True
    """

    _pandas_extra: ClassVar[str] = PANDAS_EXTRA

    def _display_table(self) -> DisplayTable:
        if not dataclasses.is_dataclass(self):  # pragma: no cover - a subclass forgot the hook
            raise NotImplementedError(f"{type(self).__name__} must implement _display_table")
        names = [f.name for f in dataclasses.fields(self) if _is_scalar(getattr(self, f.name))]
        return DisplayTable(type(self).__name__, tuple(names), (tuple(getattr(self, n) for n in names),))

    def to_pandas(self) -> DataFrame:
        """This result as a ``pandas.DataFrame`` (values exactly as stored; needs pandas).

        Raises:
            MissingDependencyError: pandas is not installed (the message names the extra).
        """
        return table_to_pandas(self._display_table(), extra=self._pandas_extra)

    def _repr_html_(self) -> str:
        return render_html(self._display_table())


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, np.generic))


def non_default_params(config: Any, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of a dataclass ``config`` whose value differs from the field's default.

    A field without a default always counts as set. ``skip`` names fields to leave out.

    Example:
        >>> from mlsys.common.ann import HNSWConfig
        >>> non_default_params(HNSWConfig(M=32))
        {'M': 32}
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        value = getattr(config, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            out[f.name] = value
            continue
        if not _same(value, default):
            out[f.name] = value
    return out


def _same(value: Any, default: Any) -> bool:
    if _is_number(value) and _is_number(default):
        return bool(value == default)
    if type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # an uncomparable value (an array) counts as set
        return False


def format_params(params: Mapping[str, Any]) -> str:
    """``k=v`` pairs joined by ``", "``, values by ``repr`` (``""`` when empty)."""
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def new_figure(**kwargs: Any) -> Figure:
    """A ``matplotlib.figure.Figure`` built without pyplot that still displays inline in Jupyter.

    pyplot is never imported (no GUI backend is touched, no global figure registry grows); the
    figure carries a ``_repr_png_`` so IPython shows it even when no inline backend is active, and
    where one is (``%matplotlib inline``), IPython's own figure formatter takes precedence.
    ``kwargs`` go to ``Figure`` (``figsize``, ``layout``, ...). Needs matplotlib
    (``pip install 'mlsys-common[plot]'``).

    Example:
        >>> fig = new_figure(figsize=(4, 3))  # doctest: +SKIP
        >>> fig._repr_png_()[:4]  # doctest: +SKIP
        b'\\x89PNG'
    """
    figure_mod = import_optional("matplotlib.figure", package="matplotlib", extra="mlsys-common[plot]")
    fig: Figure = figure_mod.Figure(**kwargs)
    fig._repr_png_ = functools.partial(_figure_png, fig)  # type: ignore[attr-defined]  # picklable
    return fig
