"""A document as sections of paragraphs, lists and tables, rendered as Markdown or as one
self-contained HTML page. Text is plain (no inline markup), so both renderings say the same.

Model cards (training/card_content.py) and drift reports (monitoring/sections.py) are such
documents; it belongs to neither stage, and the scheduled drift job carries it in the Lambda
image beside monitoring/ (standard library only)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


Block = str | list[str] | Table  # a paragraph, a bulleted list, a table


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def number(value: float | None, unit: str = "") -> str:
    """Three significant digits with thousands separators: 28,812.4 -> 28,800; 7.834 -> 7.83."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        text = "0"
    elif abs(value) >= 100:
        digits = 2 - math.floor(math.log10(abs(value)))
        text = f"{round(value, digits):,.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit else text


def share(value: float) -> str:
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


DASH = "\u2013"  # an en dash, for ranges: 28,800-34,200 reads as a subtraction


def markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}"]
    for section in sections:
        out += ["", f"## {section.title}"]
        for block in section.blocks:
            out.append("")
            if isinstance(block, Table):
                out.append("| " + " | ".join(block.header) + " |")
                out.append("|" + "---|" * len(block.header))
                out += [
                    "| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in block.rows
                ]
            elif isinstance(block, list):
                out += [f"- {item}" for item in block]
            else:
                out.append(block)
    return "\n".join(out) + "\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45;color:#222}table{border-collapse:collapse;margin:.5rem 0}"
    "td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}th{background:#f3f3f3}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}"
)


def to_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for section in sections:
        slug = "".join(c if c.isalnum() else "-" for c in section.title.lower())
        out.append(f'<section id="{slug}"><h2>{e(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in block.header)
                           + "</tr>")  # fmt: skip
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                        for r in block.rows]  # fmt: skip
                out.append("</table>")
            elif isinstance(block, list):
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block) + "</ul>")
            else:
                out.append(f"<p>{e(block)}</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
