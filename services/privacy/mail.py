"""What a requester is told by mail: the request received, extended, completed (with each
participant's outcome, and an export's link). The link opens a page of the shop
(``{public_url}/{language}/<page>``, web/edge.py), which downloads the export."""
from __future__ import annotations

import json

import asyncpg

from services.privacy import store
from shared import mail

MAIL_CHANNEL = "veikals_privacy_mail"
KINDS = {"lv": {"export": "datu kopija", "erasure": "dzēšana", "rectification": "labošana", "objection": "iebildums",
                "withdrawal": "piekrišanas atsaukšana"},
         "en": {"export": "a copy of your data", "erasure": "erasure", "rectification": "correction",
                "objection": "objection", "withdrawal": "withdrawal of consent"}}


def day(moment) -> str:
    return moment.strftime("%d.%m.%Y")


async def send(conn: asyncpg.Connection, request: asyncpg.Record, subject: str, body: str) -> None:
    await mail.queue_mail(conn, MAIL_CHANNEL, request["contact_email"], subject, body,
                          owner=("request_id", request["id"]))


async def received(conn: asyncpg.Connection, request: asyncpg.Record) -> None:
    kind = KINDS[request["language"]][request["kind"]]
    if request["language"] == "lv":
        await send(conn, request, "Jūsu pieprasījums ir saņemts",
                   f"Esam saņēmuši jūsu pieprasījumu: {kind}. Atbildēsim līdz {day(request['due_at'])}.\n")
    else:
        await send(conn, request, "Your request is received",
                   f"We received your request: {kind}. We will answer by {day(request['due_at'])}.\n")


async def extended(conn: asyncpg.Connection, request: asyncpg.Record) -> None:
    if request["language"] == "lv":
        await send(conn, request, "Jūsu pieprasījuma termiņš ir pagarināts",
                   f"Mums vajag vairāk laika: {request['extension_reason']}\nAtbildēsim līdz {day(request['due_at'])}.\n")
    else:
        await send(conn, request, "We need more time for your request",
                   f"We need more time: {request['extension_reason']}\nWe will answer by {day(request['due_at'])}.\n")


def export_link(public_url: str, request: asyncpg.Record, token: str) -> str:
    """The shop's page that downloads an export: a customer's request page (it needs their
    sign-in), or the guest page, where whoever has no account asks for a fresh code."""
    page = "privacy-request" if request["customer_id"] else "guest-privacy"
    return f"{public_url.rstrip('/')}/{request['language']}/{page}?id={request['id']}&token={token}"


async def completed(conn: asyncpg.Connection, request: asyncpg.Record, link: str | None) -> None:
    """The outcome per participant; for an export, the link (it also needs the requester's sign-in)."""
    lines = []
    for task in await store.tasks_of(conn, [request["id"]]):
        outcome = json.loads(task["outcome"]) if task["outcome"] else {}
        kept = [f"{r['category']} ({r['legal_basis']}, until {r['until']})" for r in outcome.get("retained", [])]
        lines.append(f"- {task['participant']}: {task['state']}" + (f"; kept: {'; '.join(kept)}" if kept else ""))
    english = request["language"] == "en"
    text = ("Your request is complete. What each part of the shop did:\n" if english
            else "Jūsu pieprasījums ir izpildīts. Ko darīja katra veikala daļa:\n") + "\n".join(lines) + "\n"
    if link:
        text += (f"\nYour data: {link}\nThe link works for a few days and a few times; it asks you to sign in "
                 "(or, without an account, for a code we mail you).\n" if english
                 else f"\nJūsu dati: {link}\nSaite darbojas dažas dienas un dažas reizes; tā prasa pieteikties "
                 "(vai, bez konta, kodu, ko nosūtīsim).\n")
    await send(conn, request, "Your request is complete" if english else "Jūsu pieprasījums ir izpildīts", text)


async def code(conn: asyncpg.Connection, email: str, code: str, purpose: str, language: str) -> None:
    """A guest's one-time code (the request's row does not exist yet, or is not theirs to name)."""
    if language == "lv":
        what = "pieprasījumu par jūsu datiem" if purpose == "request" else "jūsu datu lejupielādi"
        subject, body = ("Jūsu Veikala kods", f"Lai apstiprinātu {what}, ievadiet šo kodu:\n\ncode: {code}\n\n"
                         "Kods derīgs 30 minūtes. Ja to nelūdzāt jūs, neko nedariet.\n")
    else:
        what = "your request about your data" if purpose == "request" else "the download of your data"
        subject, body = ("Your Veikals code", f"To confirm {what}, enter this code:\n\ncode: {code}\n\n"
                         "The code works for 30 minutes. If you did not ask for it, do nothing.\n")
    await mail.queue_mail(conn, MAIL_CHANNEL, email, subject, body)
