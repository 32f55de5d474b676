"""One self-contained HTML page: inline styles, images as data URIs, no script, no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.82rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
tr.reference td { background: #eef5ff; } tr.chance td { color: #777; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
code, pre { background: #f6f6f6; padding: 0.1rem 0.3rem; font-size: 0.85rem; white-space: pre-wrap; }
.failed { color: #a00; }
table.kv td { text-align: left; white-space: normal; }
"""


@dataclass
class Section:
    """A titled block of the page: paragraphs, tables and figures, in order."""

    title: str
    parts: list[str] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (alt text, PNG), also saved as files

    def text(self, value: str, css: str = "") -> None:
        attr = f' class="{css}"' if css else ""
        self.parts.append(f"<p{attr}>{html.escape(value)}</p>")

    def code(self, value: str) -> None:
        self.parts.append(f"<pre><code>{html.escape(value)}</code></pre>")

    def heading(self, value: str) -> None:
        self.parts.append(f"<h3>{html.escape(value)}</h3>")

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[object]], reference: str | None = None, css: str = ""
    ) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = []
        for row in rows:
            kind = "reference" if row and row[0] == reference else "chance" if row and row[0] == "chance" else ""
            cls = f' class="{kind}"' if kind else ""
            cells = "".join(f"<td>{html.escape('-' if v is None else str(v))}</td>" for v in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        attr = f' class="{css}"' if css else ""
        self.parts.append(f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def image(self, png: bytes, alt: str) -> None:
        self.images.append((alt, png))
        data = base64.b64encode(png).decode()
        self.parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}">')

    def render(self) -> str:
        return f"<section><h2>{html.escape(self.title)}</h2>{''.join(self.parts)}</section>"


def page(title: str, sections: Sequence[Section]) -> str:
    """The whole document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(s.render() for s in sections)}</body></html>\n"
    )
