"""Terminal rendering of a report statement with rich (used by ``auditkit report show``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _scalar_rows(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _scalar_rows(f"{prefix}.{key}" if prefix else key, inner, rows)
    elif isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        rows.append((prefix, f"[{len(value)} entries]"))
    else:
        rows.append((prefix, str(value)))


def render_statement(console: Console, statement: dict[str, Any]) -> None:
    """Print subjects, the predicate's fields, and the per-class table when there is one."""
    console.print(f"[bold]{statement.get('predicateType')}[/]")
    for subject in statement.get("subject", []):
        digest = ", ".join(f"{k}:{v}" for k, v in subject.get("digest", {}).items())
        console.print(f"subject [cyan]{subject.get('name')}[/] {digest}")
    predicate = statement.get("predicate", {})
    rows: list[tuple[str, str]] = []
    _scalar_rows("", {k: v for k, v in predicate.items() if k not in ("results", "assumptions")}, rows)
    table = Table("field", "value", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for result in predicate.get("results", []):
        head = Table("field", "value", show_header=False, title=f"release {result['release']['name']}")
        result_rows: list[tuple[str, str]] = []
        _scalar_rows("", {k: v for k, v in result.items() if k != "per_class"}, result_rows)
        for key, value in result_rows:
            head.add_row(key, value)
        console.print(head)
        rows_in = result.get("per_class", [])
        columns = [k for k in (rows_in[0].keys() if rows_in else []) if k != "log10_p"] + ["log10_p"]
        classes = Table(*columns, title="per-class test")
        for row in rows_in:
            classes.add_row(*(f"{row[k]:+.4f}" if isinstance(row[k], float) else str(row[k]) for k in columns))
        console.print(classes)
    for assumption in predicate.get("assumptions", []):
        console.print(f"assumption: {assumption}")
