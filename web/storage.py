"""What the pages keep in a person's browser (P19), declared once: the cookie notice is written
from this, and the tests hold the pages to it (a script that keeps anything else, or a cookie
set at all, fails them).

Only what is strictly necessary, and only once it is needed: the session, kept when someone
signs in and gone when they sign out or close the tab. Nothing for analytics or marketing, so no
consent is asked for any. The services' APIs set no cookies either.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.privacy.document import Document, Section, html, markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


class Kept(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    where: Literal["cookie", "sessionStorage", "localStorage"]
    necessary: bool  # strictly necessary for what the person asked for (no consent needed)
    purpose: dict[str, str]
    kept_from: dict[str, str]
    lifetime: dict[str, str]


STORAGE = (
    Kept(name="veikals.session", where="sessionStorage", necessary=True,
         purpose={"en": "keeps you signed in on this tab: your access token and the token that renews it",
                  "lv": "uztur jūs pieteiktu šajā cilnē: jūsu piekļuves pilnvara un pilnvara, kas to atjauno"},
         kept_from={"en": "when you sign in", "lv": "kad piesakāties"},
         lifetime={"en": "until you sign out or close the tab (the tokens themselves expire sooner)",
                   "lv": "līdz izejat vai aizverat cilni (pašas pilnvaras beidzas ātrāk)"}),
)

TEXT = {
    "en": {"title": "Cookies and what the pages keep in your browser",
           "intro": "The shop's pages set no cookies. They keep only what is strictly necessary for what you ask "
                    "them to do, in your browser, and only from the moment it is needed. Nothing is kept for "
                    "statistics or marketing, so nothing needs your consent.",
           "columns": ["Name", "Where", "Why", "From", "Until"],
           "storage": {"cookie": "cookie", "sessionStorage": "the tab's session storage",
                       "localStorage": "the browser's local storage"},
           "more": "How the shop processes personal data is in its privacy notice."},
    "lv": {"title": "Sīkdatnes un tas, ko lapas glabā jūsu pārlūkā",
           "intro": "Veikala lapas neizmanto sīkdatnes. Tās jūsu pārlūkā glabā tikai to, kas noteikti "
                    "nepieciešams tam, ko no tām lūdzat, un tikai no brīža, kad tas vajadzīgs. Nekas netiek "
                    "glabāts statistikai vai mārketingam, tāpēc nekam nav vajadzīga jūsu piekrišana.",
           "columns": ["Nosaukums", "Kur", "Kāpēc", "No", "Līdz"],
           "storage": {"cookie": "sīkdatne", "sessionStorage": "cilnes sesijas krātuve",
                       "localStorage": "pārlūka lokālā krātuve"},
           "more": "Kā veikals apstrādā personas datus, ir aprakstīts paziņojumā par privātumu."},
}


def notice(language: str) -> Document:
    t = TEXT[language]
    rows = [[k.name, t["storage"][k.where], k.purpose[language], k.kept_from[language], k.lifetime[language]]
            for k in STORAGE]
    return Document(language=language, title=t["title"], sections=[  # type: ignore[arg-type]
        Section(("P19",), t["title"], [t["intro"], t["more"]],
                table=(t["columns"], rows)),
    ])


def notice_page(language: str) -> str:
    return html(notice(language))


def documents() -> dict[str, str]:
    return {f"cookie-notice.{language}.md": markdown(notice(language)) for language in ("lv", "en")}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    for name, content in documents().items():
        (target / name).write_text(content)
        print(target / name)
