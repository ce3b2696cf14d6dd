"""A local SMTP sink for development: it accepts every message and keeps it for a person to read.

``python -m deploy.mailsink`` (the runner starts it) listens on 127.0.0.1:8025 and writes each
message to ``var/mail/<time>-<recipient>.eml``; ``veikals mail`` lists them. Tests run the same
sink inside their own event loop and read the messages from ``MailSink.messages``.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import email.policy
import re
import signal
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_PORT = 8025


class MailSink:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            recipient = re.sub(r"[^A-Za-z0-9@._-]", "_", ",".join(envelope.rcpt_tos))[:80]
            (self.directory / f"{stamp}-{recipient}.eml").write_bytes(envelope.content)
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="mailsink"), host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def to(self, recipient: str) -> list[EmailMessage]:
        return [m for m in self.messages if recipient.lower() in m["To"].lower()]

    async def wait_for(self, recipient: str, count: int = 1, timeout: float = 15.0) -> list[EmailMessage]:
        """The first ``count`` messages to ``recipient``, waiting for them to arrive."""
        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.to(recipient)) >= count)
        return self.to(recipient)[:count]


def code_in(message: EmailMessage) -> str:
    """The code in one of our messages (``code:`` in English, ``kods:`` in Latvian)."""
    found = re.search(r"(?:code|kods): (\S+)", message.get_content())
    if found is None:
        raise ValueError("no verification code in the message")
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()

    async def run() -> None:
        sink = MailSink(args.dir)
        await sink.start(args.host, args.port)
        print(f"mail sink on {args.host}:{sink.port}, writing to {args.dir}", flush=True)
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await sink.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
