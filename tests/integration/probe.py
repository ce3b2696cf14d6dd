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
from shared.service import Service, event_handler, rpc
from shared.subjects import Subject
from shared.webhooks.outbound import enqueue


@remote_exception
class ProbeRefused(Exception):
    """Registered: our callers re-raise it as this class."""


class ProbeService(Service):
    name = "probe"
    migrations = Path(__file__).parent / "probe_migrations"
    inventory = DataInventory(participant="probe")

    @rpc(changes_state=False)
    async def add(self, a: int, b: int) -> int:
        return a + b

    @rpc(changes_state=False)
    async def fail(self, message: str) -> None:
        raise ValueError(message)

    @rpc(changes_state=False)
    async def refuse(self, reason: str) -> None:
        raise ProbeRefused(reason)

    @rpc(changes_state=False)
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "finished"

    @rpc(changes_state=False)
    async def unserializable(self) -> object:
        return object()

    @rpc(changes_state=False)
    async def call_stack(self) -> list[str]:
        return (ctx.current_context() or {}).get(ctx.CALL_ID_STACK, [])

    @rpc(changes_state=True)
    async def announce(self, conn, value: int) -> int:
        """Change state and report it: the event goes through the outbox."""
        await conn.execute(
            "INSERT INTO received (source, event_type, data) VALUES ('self', 'announce', $1)",
            json.dumps({"value": value}))
        await self.outbox.add(conn, "announced", {"value": value})
        return value

    @rpc(changes_state=True)
    async def ship(self, conn, email: str) -> str:
        """Create a shipment and tell the carrier: the webhook is queued in the same transaction."""
        shipment = ShipmentCreated(
            shipment_id=uuid.uuid4(), order_id=uuid.uuid4(),
            recipient=Contact(name="Anna Bērziņa", email=email, phone="+37120000000"),
            address=Address(line1="Brīvības iela 1", city="Rīga", postcode="LV-1010", country="LV"),
            parcels=[Parcel(weight_grams=900, contents="mug")])
        await conn.execute(
            "INSERT INTO received (source, event_type, data) VALUES ('self', 'ship', $1)",
            json.dumps({"shipment_id": str(shipment.shipment_id)}))
        return await enqueue(conn, self.partners.get("sandbox-carrier"), shipment)

    @rpc(changes_state=True)
    async def record(self, conn, value: int) -> str:
        """A change whose reply is unique to the run that made it (the crash tests)."""
        run = str(uuid.uuid4())
        await conn.execute("INSERT INTO received (source, event_type, data) VALUES ('self', 'record', $1)",
                           json.dumps({"value": value, "run": run}))
        await self.outbox.add(conn, "recorded", {"value": value, "run": run})
        return run

    @rpc(changes_state=True)
    async def record_unanswerable(self, conn, value: int) -> object:
        """A change whose result cannot be sent back: the change must not stand."""
        await conn.execute("INSERT INTO received (source, event_type, data) VALUES ('self', 'record', $1)",
                           json.dumps({"value": value}))
        return object()

    @rpc(changes_state=True)
    async def erase_person(self, conn, customer_id: str, email: str) -> int:
        """The probe's erasure: its tombstones stop late events, and its rows go."""
        unsent = await self.forget(conn, [Subject.customer(customer_id), Subject.email(email)])
        await conn.execute("DELETE FROM profiles WHERE customer_id = $1", uuid.UUID(customer_id))
        await conn.execute("DELETE FROM received WHERE data->>'email' = $1", email)
        return unsent

    @event_handler("people", "profile_changed", keep="newest")
    async def on_profile_changed(self, conn, data) -> None:
        await conn.execute(
            """INSERT INTO profiles (customer_id, name) VALUES ($1, $2)
               ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name""",
            uuid.UUID(data["customer_id"]), data["name"])

    @event_handler("people", "guest_ordered")
    async def on_guest_ordered(self, conn, data) -> None:
        await self._record(conn, "people", "guest_ordered", data)

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
