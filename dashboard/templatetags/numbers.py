"""Numbers for people: 1,234,567.

Django's ``intcomma`` goes through the locale machinery for every cell, which made the
90-row usage table the slowest part of the dashboard; the site's pages are in English, so
Python's own grouping gives the same text at a fraction of the cost.
"""

from decimal import Decimal

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def thousands(value: object) -> object:
    """``1234567`` as ``"1,234,567"``; anything that is not an integer, unchanged."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


@register.filter
def number_cells(values: list[int]) -> str:
    """One ``<td class="number">`` per value: a row of the 90-row usage table in one call
    instead of one template lookup per cell. ``int()`` keeps anything but numbers out."""
    return mark_safe("".join(f'<td class="number">{int(value):,}</td>' for value in values))


@register.filter
def usage_rows(rows: list, columns: list[str] | None = None) -> str:
    """The usage table's body: per row (``dashboard.overview.Row``) its label, one number
    cell per column and the row's total. Written in one call: as template tags, its 90 rows
    of cells took half of the dashboard page's time. A row with a period has its label in a
    ``<time>``, which the page writes again in the reader's locale. With ``columns``, each
    cell names its column (``data-label``) and an empty one says so (``zero``): a phone
    shows each row as a line per day with only the models it has."""
    if columns is None:
        return mark_safe("".join(_usage_row(row, number_cells(row.values)) for row in rows))
    labels = [escape(column) for column in columns]
    return mark_safe("".join(_usage_row(row, _labelled_cells(row.values, labels)) for row in rows))


def _labelled_cells(values: list[int], labels: list[str]) -> str:
    return "".join(
        f'<td class="number{" zero" if not value else ""}" data-label="{label}">{int(value):,}</td>'
        for value, label in zip(values, labels, strict=True)
    )


@register.filter
def cost_rows(rows: list, columns: list[str]) -> str:
    """``usage_rows`` for the cost view: each cell the cost as the summary API writes it
    (a decimal string), "no price" where none of its images had one, and zero costs
    marked as empty."""
    labels = [escape(column) for column in columns]
    return mark_safe(
        "".join(
            _usage_row(row, "".join(map(_cost_cell, row.values, labels)), _cost_text(row.total))
            for row in rows
        )
    )


def _cost_text(cost: str | None) -> str:
    return "no price" if cost is None else escape(cost)


def _cost_cell(cost: str | None, label: str) -> str:
    empty = " zero" if cost is not None and not Decimal(cost) else ""
    return f'<td class="number{empty}" data-label="{label}">{_cost_text(cost)}</td>'


def _usage_row(row, cells: str, total: str | None = None) -> str:
    label = escape(row.label)
    if row.period:
        label = f'<time datetime="{escape(row.period)}">{label}</time>'
    total = f"{int(row.total):,}" if total is None else total
    return (
        f'<tr><th scope="row">{label}</th>{cells}'
        f'<td class="number row-total" data-label="Total">{total}</td></tr>'
    )
