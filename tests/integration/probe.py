"""A small service built on shared/ the way real services are, for the integration tests."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from shared.contracts.privacy import DataInventory
from shared.contracts.webhooks import Address, Contact, Parcel, ShipmentCreated
from shared.messaging import context as ctx
from shared.messaging import remote_exception
from shared.outbox import add_event
from shared.service import Service, event_handler, rpc
from shared.webhooks.outbound import enqueue


@remote_exception
class ProbeRefused(Exception):
    """Registered: our callers re-raise it as this class."""


class ProbeService(Service):
    name = "probe"
    migrations = Path(__file__).parent / "probe_migrations"
    inventory = DataInventory(participant="probe")

    @rpc
    async def add(self, a: int, b: int) -> int:
        return a + b

    @rpc
    async def fail(self, message: str) -> None:
        raise ValueError(message)

    @rpc
    async def refuse(self, reason: str) -> None:
        raise ProbeRefused(reason)

    @rpc
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "finished"

    @rpc
    async def unserializable(self) -> object:
        return object()

    @rpc
    async def call_stack(self) -> list[str]:
        return (ctx.current_context() or {}).get(ctx.CALL_ID_STACK, [])

    @rpc
    async def announce(self, value: int) -> int:
        """Change state and report it: the event goes through the outbox."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO received (source, event_type, data) VALUES ('self', 'announce', $1)",
                json.dumps({"value": value}))
            await add_event(conn, self.name, "announced", {"value": value})
        return value

    @rpc
    async def ship(self, email: str) -> str:
        """Create a shipment and tell the carrier: the webhook is queued in the same transaction."""
        shipment = ShipmentCreated(
            shipment_id=uuid.uuid4(), order_id=uuid.uuid4(),
            recipient=Contact(name="Anna Bērziņa", email=email, phone="+37120000000"),
            address=Address(line1="Brīvības iela 1", city="Rīga", postcode="LV-1010", country="LV"),
            parcels=[Parcel(weight_grams=900, contents="mug")])
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO received (source, event_type, data) VALUES ('self', 'ship', $1)",
                json.dumps({"shipment_id": str(shipment.shipment_id)}))
            return await enqueue(conn, self.partners.get("sandbox-carrier"), shipment)

    async def on_partner_callback(self, conn, partner, reply) -> None:
        await self._record(conn, partner.name, reply.event_type, reply.model_dump(mode="json"))

    @event_handler("nameko_peer", "pinged")
    async def on_pinged(self, conn, data) -> None:
        await self._record(conn, "nameko_peer", "pinged", data)

    @event_handler("ticker", "tick")
    async def on_tick(self, conn, data) -> None:
        if data.get("poison"):
            raise RuntimeError(f"cannot handle tick {data.get('n')}")
        await self._record(conn, "ticker", "tick", data)

    @staticmethod
    async def _record(conn, source: str, event_type: str, data) -> None:
        await conn.execute(
            "INSERT INTO received (source, event_type, data) VALUES ($1, $2, $3)",
            source, event_type, json.dumps(data))
