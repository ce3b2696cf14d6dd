"""The pages' texts, in Latvian (the default) and English: ``texts/<area>.<lang>.json`` (common,
customer, staff), merged; a key in two files of a language is an error.

A page writes ``{{t:key}}`` where a text goes; the edge fills it in before the page leaves, so
a page reads in its language without a script. The scripts read the same texts
(``/assets/i18n/<lang>.json``) for what they show later. A key missing in either language
fails the tests, not a customer's page.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

TEXTS_DIR = Path(__file__).resolve().parent / "texts"


def _load(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in sorted(TEXTS_DIR.glob(f"*.{language}.json")):
        texts = json.loads(source.read_text())
        if twice := set(texts) & set(merged):
            raise ValueError(f"{source.name}: keys also in another file: {sorted(twice)}")
        merged.update(texts)
    return merged


TEXTS: dict[str, dict[str, str]] = {language: _load(language) for language in ("lv", "en")}
PLACEHOLDER = re.compile(r"\{\{t:([\w.-]+)\}\}")


class MissingText(KeyError):
    """A page or script names a text that a language lacks."""


def text(language: str, key: str) -> str:
    try:
        return TEXTS[language][key]
    except KeyError:
        raise MissingText(f"no {language} text {key!r} in web/texts/*.{language}.json") from None


def fill(language: str, html: str) -> str:
    """``html`` with every ``{{t:key}}`` replaced by that text, escaped for HTML."""
    from html import escape
    return PLACEHOLDER.sub(lambda m: escape(text(language, m.group(1)), quote=True), html)
