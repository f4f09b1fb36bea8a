"""HTML building blocks of the reports: the displayable block, escaping, tables, cards, stats.

Pure functions of numbers and strings. Every CRM string goes through ``esc`` before it goes
into markup; the helpers that take HTML (``html_table`` cells, ``card`` body) say so.

Example
-------
>>> card("Teams", html_table([[esc("<b>East</b>"), "$1K"]], ["Team", "Revenue"], numeric=[1]))[:25]
'<section class="kr-card "'
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from IPython.display import HTML

from kpi_lib.report import theme
from kpi_lib.report.theme import is_missing


class Html(HTML):
    """An HTML block of a report; ``str(block)`` is its markup.

    Shown as ``display_data`` (not an ``execute_result``), so every nbconvert template that
    renders displayed outputs exports it, whatever it does with cell results.
    """

    def __str__(self) -> str:
        return self.data or ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.data:
            display({"text/html": self.data, "text/plain": "[report section]"}, raw=True)


def esc(value) -> str:
    """``html.escape`` for any value (CRM names may contain markup)."""
    return html.escape("" if value is None else str(value), quote=True)


def bar_html(share: float, color: str) -> str:
    """A small horizontal CSS bar for a table cell, ``share`` of its width (capped at 100%)."""
    width = 0 if is_missing(share) else max(0.0, min(float(share), 1.0)) * 100
    return (
        f'<span class="kr-bar"><span style="width:{width:.0f}%;background:{color}"></span></span>'
    )


def html_table(
    rows: list[list[str]],
    header: list[str],
    *,
    numeric: Iterable[int] = (),
    total: list[str] | None = None,
    caption: str = "",
) -> str:
    """A styled table in its own horizontal scroller; cells are HTML (escape them first).

    ``numeric`` lists the column positions to right-align; ``total`` is a bold last row.
    """
    numeric = set(numeric)

    def cells(values: list[str], tag: str) -> str:
        out = []
        for i, v in enumerate(values):
            cls = "kr-num" if i in numeric else ("kr-name" if i == 0 and tag == "td" else "")
            out.append(f"<{tag}{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>{v}</{tag}>")
        return "".join(out)

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    if total:
        body += f'<tr class="kr-total">{cells(total, "td")}</tr>'
    cap = f'<caption class="kr-note">{esc(caption)}</caption>' if caption else ""
    return (
        f'<div class="kr-table-wrap"><table class="kr-table">{cap}<thead><tr>'
        f"{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def card(title: str, body: str, note: str = "", extra_class: str = "") -> str:
    """A white card with a title, an optional one-line note, and HTML ``body``."""
    note_html = f'<p class="kr-note">{note}</p>' if note else ""
    return (
        f'<section class="kr-card {extra_class}"><h3>{esc(title)}</h3>{note_html}{body}</section>'
    )


def stat_html(label: str, value: str) -> str:
    return (
        f'<div class="kr-stat"><div class="kr-stat-label">{esc(label)}</div>'
        f'<div class="kr-stat-value">{esc(value)}</div></div>'
    )


def count_text(value) -> str:
    return theme.NA if is_missing(value) else f"{float(value):,.0f}"
