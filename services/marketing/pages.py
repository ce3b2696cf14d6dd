"""The two small pages a link in our mail opens: each asks for a press of its button, so a mail
scanner that follows links confirms or unsubscribes no one. In the recipient's language."""
from __future__ import annotations

from html import escape

from aiohttp import web

TEXTS = {
    "unsubscribe": {
        "lv": ("Atteikties no piedāvājumiem", "Vai vairs nevēlaties saņemt Veikala piedāvājumus {channel}?",
               "Atteikties", "Jūs esat atteicies. Mēs jums vairs nerakstīsim {channel}."),
        "en": ("Unsubscribe", "Do you want to stop receiving Veikals offers {channel}?", "Unsubscribe",
               "You are unsubscribed. We will not write to you {channel} again."),
    },
    "confirm": {
        "lv": ("Apstiprināt piekrišanu", "Apstipriniet, ka vēlaties saņemt Veikala piedāvājumus e-pastā.",
               "Apstiprināt", "Paldies: piekrišana apstiprināta. Atteikties varat ar saiti katrā vēstulē."),
        "en": ("Confirm your consent", "Confirm that you want to receive Veikals offers by e-mail.", "Confirm",
               "Thank you: your consent is confirmed. Every message carries a link to unsubscribe."),
    },
}
CHANNEL = {"lv": {"email": "e-pastā", "sms": "īsziņās"}, "en": {"email": "by e-mail", "sms": "by text message"}}


def _html(language: str, title: str, content: str) -> web.Response:
    return web.Response(content_type="text/html", charset="utf-8", text=(
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title></head>'
        f"<body><main><h1>{escape(title)}</h1>{content}</main></body></html>"))


def ask(kind: str, language: str, action: str, channel: str = "email") -> web.Response:
    """The page with the button; the form posts back to ``action`` (the same link)."""
    title, question, button, _ = TEXTS[kind][language]
    one_click = '<input type="hidden" name="List-Unsubscribe" value="One-Click">' if kind == "unsubscribe" else ""
    return _html(language, title, (
        f"<p>{escape(question.format(channel=CHANNEL[language][channel]))}</p>"
        f'<form method="post" action="{escape(action)}">{one_click}'
        f'<button type="submit">{escape(button)}</button></form>'))


def done(kind: str, language: str, channel: str = "email") -> web.Response:
    title, _, _, text = TEXTS[kind][language]
    return _html(language, title, f"<p>{escape(text.format(channel=CHANNEL[language][channel]))}</p>")
