"""Self-contained HTML pages (cvrun inspect's report.html, cvrun summarize --html): tables, and PNGs embedded
as data URIs so that a page opens anywhere, offline, as one file."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def html_image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} img{{max-width:100%;border:1px solid #ddd}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def write_report(path: Path, title: str, sections: list[tuple[str, str]]) -> None:
    """One page with every section (heading, HTML) and the images embedded: it opens anywhere, offline."""
    from cvrun.io import atomic_write_bytes

    body = "".join(f"<h2>{html.escape(heading)}</h2>\n{content}\n" for heading, content in sections)
    atomic_write_bytes(path, PAGE.format(title=html.escape(title), body=body).encode())
