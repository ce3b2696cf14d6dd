"""A generated document (the privacy notice, the record of processing) and its forms: the
Markdown committed under docs/, the HTML page served, and the data the shop's pages lay out."""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Literal

Language = Literal["lv", "en"]


@dataclass
class Section:
    clauses: tuple[str, ...]  # the policy's clauses the section covers
    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    key: str | None = None  # what the section is about, the same in every language (pages pick by it)


@dataclass
class Document:
    language: Language
    title: str
    sections: list[Section]

    @property
    def clauses(self) -> set[str]:
        return {c for s in self.sections for c in s.clauses}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(document: Document) -> str:
    out = [f"# {document.title}", ""]
    for s in document.sections:
        out += [f"## {s.title}", ""]
        for p in s.paragraphs:
            out += [p, ""]
        if s.items:
            out += [f"- {i}" for i in s.items] + [""]
        if s.table:
            header, rows = s.table
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows] + [""]
    return "\n".join(out)


def data(document: Document) -> dict:
    """The document as JSON-ready data: its sections in order, each with its key and clauses."""
    return {"language": document.language, "title": document.title, "sections": [
        {"key": s.key, "clauses": list(s.clauses), "title": s.title, "paragraphs": s.paragraphs, "items": s.items,
         "table": {"header": s.table[0], "rows": s.table[1]} if s.table else None} for s in document.sections]}


def html(document: Document) -> str:
    """A page with no scripts and no cookies, readable on a phone."""
    body = [f"<h1>{escape(document.title)}</h1>"]
    for s in document.sections:
        body.append(f"<section><h2>{escape(s.title)}</h2>")
        body += [f"<p>{escape(p)}</p>" for p in s.paragraphs]
        if s.items:
            body.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in s.items) + "</ul>")
        if s.table:
            header, rows = s.table
            body.append("<table><thead><tr>" + "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
                        + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</tbody></table>")
        body.append("</section>")
    return (f'<!doctype html><html lang="{document.language}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(document.title)}</title><style>body{{font-family:sans-serif;max-width:70rem;"
            "margin:auto;padding:1rem;color:#111;background:#fff}table{border-collapse:collapse}"
            "td,th{border:1px solid #555;padding:.3rem;text-align:left;vertical-align:top}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>")
