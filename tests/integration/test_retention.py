"""The retention report: every service's clocks read its migrated schema, a record kept past its
period shows as overdue until the sweep removes it, and a service that is down shows as
unreachable while the rest of the report stands (real PostgreSQL and RabbitMQ)."""
from __future__ import annotations

import datetime as dt

import pytest

from services.topology import service_classes
from shared import db, retention
from shared.contracts.privacy import DataInventory, InventoryEntry, LegalBasis, Retention
from shared.service import SHARED_INVENTORY
from tests.conftest import own_database
from tests.integration.conftest import migrated_pool
from tests.integration.test_accounts import mailsink  # noqa: F401 (a fixture)
from tests.integration.test_marketing import market  # noqa: F401 (a fixture)
from tests.integration.test_orders import shop  # noqa: F401 (a fixture)
from tests.integration.test_payments import payments  # noqa: F401 (a fixture)
from tests.integration.test_privacy import privacy  # noqa: F401 (a fixture)

THROTTLING = ("accounts", "sign-in throttling")


@pytest.mark.parametrize("service", service_classes(), ids=lambda cls: cls.name)
async def test_every_clock_reads_the_migrated_schema(service):
    inventory = DataInventory(participant=service.name, entries=[*service.inventory.entries, *SHARED_INVENTORY])
    async with own_database() as dsn:
        pool = await db.create_pool(dsn, max_size=2)
        try:
            await db.migrate(pool, service.migration_scopes())
            async with pool.acquire() as conn:
                report = await retention.report(conn, inventory, {**retention.SHARED_CLOCKS,
                                                                  **service.retention_clocks})
        finally:
            await pool.close()
    assert [(e.table, e.category, e.error) for e in report.entries if e.error] == []
    assert len(report.entries) == sum(1 for e in inventory.entries if e.retention.period_days)
    assert not any(e.overdue or e.records for e in report.entries)  # an empty database


async def test_the_oldest_record_started_and_what_is_past_its_period(database):
    calls = InventoryEntry(category="replies", table="rpc_calls", fields=["reply"], purpose="p",
                           legal_basis=LegalBasis.CONTRACT, retention=Retention(period_days=7, after="the call"))
    events = calls.model_copy(update={"category": "events", "table": "outbox"})
    inventory = DataInventory(participant="probe", entries=[calls, events])
    clocks = {("rpc_calls", "replies"): "SELECT created_at FROM rpc_calls",
              ("outbox", "events"): "SELECT published_at FROM outbox"}
    pool = await migrated_pool(database)
    try:
        await pool.executemany("INSERT INTO rpc_calls (method, key, created_at) VALUES ('m', $1, now() - $2::interval)",
                               [("fresh", dt.timedelta(days=1)), ("due", dt.timedelta(days=7, hours=1)),
                                ("late", dt.timedelta(days=9))])
        await pool.execute("""INSERT INTO outbox (id, exchange, routing_key, body)
                              VALUES (gen_random_uuid(), 'x', 'y', '')""")  # not published: no clock yet
        async with pool.acquire() as conn:
            found = {e.table: e for e in (await retention.report(conn, inventory, clocks)).entries}
            oldest = await conn.fetchval("SELECT created_at FROM rpc_calls WHERE key = 'late'")
    finally:
        await pool.close()
    replies = found["rpc_calls"]
    assert (replies.records, replies.past_due, replies.oldest) == (3, 2, oldest)
    assert replies.due == oldest + dt.timedelta(days=7) and replies.overdue  # two days past: overdue
    assert (found["outbox"].records, found["outbox"].oldest, found["outbox"].overdue) == (0, None, False)


def row(report: dict, participant: str, category: str) -> dict:
    [found] = [r for r in report["rows"] if (r["participant"], r["category"]) == (participant, category)]
    return found


async def test_a_record_past_its_period_is_overdue_until_the_sweep_removes_it(privacy):  # noqa: F811
    admin = await privacy.shop.staff_token("admin")
    _, fresh = await privacy.call("GET", "/v1/staff/retention-report", admin, expect=200)
    assert fresh["summary"] == {"ok": True, "participants": 5, "unreachable": [], "failed": [],
                                "rows": len(fresh["rows"]), "overdue": 0, "unreadable": 0}
    assert {p["participant"]: p["state"] for p in fresh["participants"]} == {
        p: "answered" for p in ("accounts", "orders", "payments", "marketing", "privacy")}
    assert ("orders", "invoices") in {(r["participant"], r["category"]) for r in fresh["rows"]}
    assert ("payments", "processors' confirmations") in {(r["participant"], r["category"]) for r in fresh["rows"]}

    # A failed sign-in three days ago, kept one day: the sweep has not run since.
    accounts = privacy.shop.accounts.service
    await accounts.pool.execute("INSERT INTO throttle (key, at) VALUES ('\\x01', now() - interval '3 days')")
    _, late = await privacy.call("GET", "/v1/staff/retention-report", admin, expect=200)
    throttling = row(late, *THROTTLING)
    assert throttling["overdue"] and (throttling["records"], throttling["past_due"], throttling["period_days"]) == (1, 1, 1)
    assert late["summary"]["ok"] is False and late["summary"]["overdue"] == 1
    _, page = await privacy.call("GET", "/v1/staff/retention-report/page", admin, expect=200)
    page = page.decode()
    assert "1 overdue" in page and page.index("OVERDUE") < page.index("<td>ok</td>")  # what is overdue first

    swept = await privacy.runtime.service.rpc.call("accounts", "run_retention_sweep")
    assert swept["throttle"] == 1
    # What an operator reads in nameko shell: n.rpc.privacy.retention_report()
    after = await privacy.runtime.service.rpc.call("privacy", "retention_report")
    swept_row = row(after, *THROTTLING)
    assert (swept_row["records"], swept_row["oldest"], swept_row["overdue"]) == (0, None, False)
    assert after["summary"]["ok"] is True

    support = await privacy.shop.staff_token("support")
    await privacy.call("GET", "/v1/staff/retention-report", support, expect=200)
    customer = await privacy.shop.client.customer("curious@example.lv")
    await privacy.call("GET", "/v1/staff/retention-report", customer["access_token"], expect=403)
    await privacy.call("GET", "/v1/staff/retention-report", expect=401)


async def test_a_service_that_is_down_is_shown_unreachable_and_the_rest_stands(privacy, monkeypatch):  # noqa: F811
    monkeypatch.setattr(privacy.runtime.service.settings, "retention_report_timeout_s", 1.0)
    admin = await privacy.shop.staff_token("admin")
    await privacy.market.runtime.stop()  # its queue stays: the request waits there unanswered
    _, report = await privacy.call("GET", "/v1/staff/retention-report", admin, expect=200)
    states = {p["participant"]: (p["state"], p["error"]) for p in report["participants"]}
    assert states["marketing"] == ("unreachable", "no answer within 1 s")
    assert all(state == "answered" for p, (state, _) in states.items() if p != "marketing")
    assert report["summary"]["unreachable"] == ["marketing"] and report["summary"]["ok"] is False
    assert {r["participant"] for r in report["rows"]} == {"accounts", "orders", "payments", "privacy"}
