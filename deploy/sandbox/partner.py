"""A sandbox partner: receives our webhooks as a real processor would, and calls back.

It verifies every delivery with the ``standardwebhooks`` package (the partner's side of the
specification, not our code), processes each ``webhook-id`` once, stores what it received (in
memory and as JSON lines in ``--store``), and after processing calls back the way its kind of
partner does: a carrier accepts a shipment, an accountant books an invoice, an SMS gateway reports a text delivered, any partner confirms
an erasure or an export. Tests and developers steer it through ``/_control``:

    POST /_control/behaviour  {"fail_next": 3, "status": 503, "retry_after": "2",
                               "delay_s": 0.5, "redirect_to": "https://...", "gone": true}
    GET  /_control/received   what it has processed, in order
    GET  /_control/attempts   every request it saw, verified or not, with its answer
    POST /_control/reset

    python -m deploy.sandbox.partner --name sandbox-carrier --kind carrier --port 9201 \\
        --secret-env VEIKALS_PARTNER_SANDBOX_CARRIER_SECRET --callback-url http://127.0.0.1:8102/v1/partners/sandbox-carrier/callbacks
"""
from __future__ import annotations

import argparse
import asyncio
import re
import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# What each kind of partner answers, in order, by the type of message it received: a carrier
# picks the parcel up, then delivers it.
CALLBACKS = {
    "carrier": {"shipment.created": ("shipment.accepted", "shipment.delivered")},
    "accounting": {"invoice.issued": ("invoice.booked",)},
    "sms": {"sms.requested": ("sms.delivered",)},
}
FOR_EVERY_KIND = {"privacy.erasure_requested": ("erasure.completed",),
                  "privacy.export_requested": ("export.completed",),
                  "privacy.rectification_requested": ("rectification.completed",),
                  "privacy.objection_received": ("objection.applied",)}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
FOR_EVERY_KIND_ANSWERS = {answer for answers in FOR_EVERY_KIND.values() for answer in answers}


class Behaviour:
    def __init__(self) -> None:
        self.fail_next = 0
        self.status = 500
        self.retry_after: str | None = None
        self.delay_s = 0.0
        self.redirect_to: str | None = None
        self.gone = False


class SandboxPartner:
    def __init__(self, name: str, kind: str, secret: str, callback_url: str | None,
                 store: Path | None, privacy_callback_url: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.webhook = Webhook(secret)
        self.callback_url = callback_url
        # Answers to privacy requests go to the privacy service, which sent them.
        self.privacy_callback_url = privacy_callback_url
        self.store = store
        self.behaviour = Behaviour()
        self.received: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.callbacks_sent: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        if store is not None and store.exists():  # what it processed before a restart
            self.received = [json.loads(line) for line in store.read_text().splitlines() if line]
            self._seen = {r["webhook_id"] for r in self.received}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks", self.receive)
        app.router.add_post("/_control/behaviour", self.set_behaviour)
        app.router.add_get("/_control/received", self.list_received)
        app.router.add_get("/_control/attempts", self.list_attempts)
        app.router.add_get("/_control/callbacks", self.list_callbacks)
        app.router.add_post("/_control/reset", self.reset)
        app.router.add_get("/healthz", self.healthz)
        app.on_cleanup.append(self._finish_callbacks)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        answer = await self._answer(request, body, webhook_id)
        self.attempts.append({"webhook_id": webhook_id, "status": answer.status,
                              "at": dt.datetime.now(dt.timezone.utc).isoformat()})
        return answer

    async def _answer(self, request: web.Request, body: bytes, webhook_id: str) -> web.Response:
        b = self.behaviour
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.gone:
            return web.json_response({"error": "this endpoint is gone"}, status=410)
        if b.redirect_to:
            raise web.HTTPFound(b.redirect_to)
        try:
            message = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        if b.fail_next > 0:
            b.fail_next -= 1
            headers = {"Retry-After": b.retry_after} if b.retry_after else {}
            return web.json_response({"error": "sandbox told to fail"}, status=b.status, headers=headers)
        if webhook_id in self._seen:
            return web.json_response({"status": "already processed"})
        self._seen.add(webhook_id)
        record = {"webhook_id": webhook_id, "timestamp": request.headers["webhook-timestamp"],
                  "message": message}
        self.received.append(record)
        if self.store is not None:
            with self.store.open("a") as out:
                out.write(json.dumps(record) + "\n")
        answers = {**CALLBACKS.get(self.kind, {}), **FOR_EVERY_KIND}.get(message.get("type"), ())
        if answers and self._callback_url(answers[0]):
            task = asyncio.create_task(self._call_back_all(answers, webhook_id, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"status": "processed"})

    def _about(self, subject: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored messages that mention the subject's id, e-mails or phones, but not one
        that names someone else's e-mail address (a family sharing a phone is two people)."""
        emails = {e.lower() for e in subject.get("emails") or []}
        needles = [str(subject.get("customer_id") or ""), *emails, *(subject.get("phones") or [])]
        needles = [n for n in needles if n]

        def theirs(record: dict[str, Any]) -> bool:
            text = json.dumps(record["message"].get("data"))
            others = {e.lower() for e in EMAIL.findall(text)} - emails
            return any(n in text for n in needles) and not others
        return [r for r in self.received if r["message"].get("type") not in FOR_EVERY_KIND and theirs(r)]

    def _act_on(self, answer_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Do what the request asks, as the partner would, and say what was done."""
        if answer_type == "shipment.accepted":
            return {"shipment_id": data.get("shipment_id"),
                    "tracking_number": f"SBX{uuid.uuid4().hex[:10].upper()}"}
        if answer_type == "shipment.delivered":
            return {"shipment_id": data.get("shipment_id")}
        if answer_type == "sms.delivered":
            return {"message_id": data.get("message_id")}
        if answer_type == "invoice.booked":
            return {"invoice_id": data.get("invoice_id"), "booked_on": dt.date.today().isoformat()}
        found = self._about(data.get("subject") or {})
        if answer_type == "objection.applied":
            return {"request_id": data.get("request_id")}
        if answer_type == "rectification.completed":
            corrections = {k: v for k, v in (data.get("corrections") or {}).items() if v}
            for record in found:  # as a processor would: the stored contact details corrected
                recipient = record["message"].get("data", {}).get("recipient")
                if isinstance(recipient, dict):
                    recipient.update({k: v for k, v in corrections.items() if k in recipient})
            self._rewrite_store()
            return {"request_id": data.get("request_id"), "records_rectified": len(found)}
        if answer_type == "erasure.completed":
            for record in found:
                self.received.remove(record)
            self._rewrite_store()
            return {"request_id": data.get("request_id"), "records_erased": len(found)}
        return {"request_id": data.get("request_id"), "records": [r["message"] for r in found]}

    def _rewrite_store(self) -> None:
        if self.store is not None:
            self.store.write_text("".join(json.dumps(r) + "\n" for r in self.received))

    async def _call_back_all(self, answers: tuple[str, ...], webhook_id: str, message: dict[str, Any]) -> None:
        for answer_type in answers:
            await self._call_back(answer_type, webhook_id, message)

    def _callback_url(self, answer_type: str) -> str | None:
        if answer_type in FOR_EVERY_KIND_ANSWERS and self.privacy_callback_url:
            return self.privacy_callback_url
        return self.callback_url

    async def _call_back(self, answer_type: str, webhook_id: str, message: dict[str, Any]) -> None:
        data = {"in_reply_to": webhook_id, **self._act_on(answer_type, message.get("data", {}))}
        now = dt.datetime.now(dt.timezone.utc)
        body = json.dumps({"type": answer_type, "timestamp": now.isoformat(), "data": data})
        callback_id = f"msg_{uuid.uuid4().hex}"
        headers = {"webhook-id": callback_id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self.webhook.sign(callback_id, now, body),
                   "Content-Type": "application/json"}
        sent = {"webhook_id": callback_id, "type": answer_type, "status": None}
        self.callbacks_sent.append(sent)
        for delay in (0.2, 1, 5, 30):  # a partner retries its callbacks too
            await asyncio.sleep(delay)
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.post(self._callback_url(answer_type), data=body, headers=headers) as resp:
                        sent["status"] = resp.status
                        if resp.status < 500:
                            return
            except aiohttp.ClientError as exc:
                sent["status"] = f"{type(exc).__name__}"

    async def _finish_callbacks(self, _: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "partner": self.name})

    async def set_behaviour(self, request: web.Request) -> web.Response:
        wanted = await request.json()
        for key, value in wanted.items():
            if not hasattr(self.behaviour, key):
                return web.json_response({"error": f"unknown behaviour {key!r}"}, status=400)
            setattr(self.behaviour, key, value)
        return web.json_response(vars(self.behaviour))

    async def list_received(self, _: web.Request) -> web.Response:
        return web.json_response(self.received)

    async def list_attempts(self, _: web.Request) -> web.Response:
        return web.json_response(self.attempts)

    async def list_callbacks(self, _: web.Request) -> web.Response:
        return web.json_response(self.callbacks_sent)

    async def reset(self, _: web.Request) -> web.Response:
        self.behaviour = Behaviour()
        self.received.clear()
        self.attempts.clear()
        self.callbacks_sent.clear()
        self._seen.clear()
        return web.json_response({"status": "reset"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--kind", required=True, choices=["carrier", "accounting", "hosting", "psp", "email", "sms"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-env", required=True, help="variable holding the shared secret")
    parser.add_argument("--callback-url")
    parser.add_argument("--privacy-callback-url", help="where answers to privacy requests go (the privacy service)")
    parser.add_argument("--store", type=Path)
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env)
    if not secret:
        parser.error(f"{args.secret_env} is not set")
    partner = SandboxPartner(args.name, args.kind, secret, args.callback_url, args.store, args.privacy_callback_url)
    web.run_app(partner.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
