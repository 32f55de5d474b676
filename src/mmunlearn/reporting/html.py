"""One self-contained HTML page: inline styles, images as data URIs, no script, no network.

Only relative links (to files written next to the page) and in-page anchors are emitted.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1320px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; }
p.headline { font-size: 1.02rem; background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.45rem 0.7rem; }
ul.glance li { margin: 0.3rem 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.82rem; display: block; overflow-x: auto;
        max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
thead th, thead th:first-child { background: #f3f3f3; }
th.key { background: #e4ecf7; } td.key { font-weight: 600; }
tr.reference td { background: #eef5ff; } tr.chance td { color: #777; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
code, pre { background: #f6f6f6; padding: 0.1rem 0.3rem; font-size: 0.85rem; white-space: pre-wrap; }
details { margin: 0.5rem 0; } summary { cursor: pointer; color: #1a4f8a; }
.failed { color: #a00; }
table.kv td, table.glossary td { text-align: left; white-space: normal; }
table.glossary td:first-child { white-space: nowrap; } table.glossary th { text-align: left; }
"""


def slug(text: str) -> str:
    """A lower-case ``a-z0-9-`` form of ``text`` (file names, anchors)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _attrs(css: str = "", title: str = "") -> str:
    """`` class="…" title="…"`` for the non-empty ones."""
    out = f' class="{html.escape(css, quote=True)}"' if css else ""
    return out + (f' title="{html.escape(title, quote=True)}"' if title else "")


def table_html(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    reference: str | None = None,
    css: str = "",
    key: int = 0,
    titles: Sequence[str] = (),
) -> str:
    """A table: the first ``key`` columns marked ``key``, ``titles`` as header tooltips, the reference row marked."""
    tips = [*titles, *[""] * len(headers)]
    head = "".join(
        f"<th{_attrs('key' if i < key else '', tips[i])}>{html.escape(str(h))}</th>" for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        kind = "reference" if row and row[0] == reference else "chance" if row and row[0] == "chance" else ""
        cells = "".join(
            f"<td{_attrs('key' if 0 < i < key else '')}>{html.escape('-' if v is None else str(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr{_attrs(kind)}>{cells}</tr>")
    return f"<table{_attrs(css)}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def link_html(label: str, href: str) -> str:
    """A relative link (a file next to the page, or ``#anchor``)."""
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(label)}</a>'


@dataclass
class Section:
    """A titled block of the page: paragraphs, tables and figures, in order; ``anchor`` is its id."""

    title: str
    anchor: str = ""
    parts: list[str] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (alt text, PNG), also saved as files

    def text(self, value: str, css: str = "") -> None:
        attr = f' class="{css}"' if css else ""
        self.parts.append(f"<p{attr}>{html.escape(value)}</p>")

    def link(self, before: str, label: str, href: str, after: str = "") -> None:
        """A paragraph with one relative link (a file next to the page, or ``#anchor``)."""
        self.parts.append(f"<p>{html.escape(before)}{link_html(label, href)}{html.escape(after)}</p>")

    def links(self, items: Sequence[tuple[str, str, str]], css: str = "") -> None:
        """A list of (link label, ``#anchor`` or relative href, text after it)."""
        attr = f' class="{css}"' if css else ""
        lis = "".join(f"<li>{link_html(label, href)}{html.escape(after)}</li>" for label, href, after in items)
        self.parts.append(f"<ul{attr}>{lis}</ul>")

    def code(self, value: str) -> None:
        self.parts.append(f"<pre><code>{html.escape(value)}</code></pre>")

    def heading(self, value: str) -> None:
        self.parts.append(f"<h3>{html.escape(value)}</h3>")

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[object]],
        reference: str | None = None,
        css: str = "",
        key: int = 0,
        titles: Sequence[str] = (),
    ) -> None:
        self.parts.append(table_html(headers, rows, reference=reference, css=css, key=key, titles=titles))

    def details(self, summary: str, inner: str) -> None:
        """A collapsed block (no script: the browser's own ``<details>``) holding ready HTML."""
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>{inner}</details>")

    def image(self, png: bytes, alt: str) -> None:
        self.images.append((alt, png))
        data = base64.b64encode(png).decode()
        self.parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}">')

    def render(self) -> str:
        anchor = f' id="{html.escape(self.anchor, quote=True)}"' if self.anchor else ""
        return f"<section{anchor}><h2>{html.escape(self.title)}</h2>{''.join(self.parts)}</section>"


def page(title: str, sections: Sequence[Section]) -> str:
    """The whole document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(s.render() for s in sections)}</body></html>\n"
    )
