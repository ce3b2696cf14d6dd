"""The pure rules behind exactly-once effects: derived ids, retry classes, subjects, queues."""
import random
import uuid

import asyncpg
import pytest

from shared import inputs
from shared.contracts.privacy import DataSubject
from shared.messaging import context as ctx
from shared.messaging import topology
from shared.messaging.broker import BrokerUnavailable
from shared.messaging.retry import backoff, is_transient
from shared.subjects import Subject, SubjectKeys, subjects_of


def test_ids_derived_from_a_key_are_the_same_on_every_run_and_differ_in_order():
    def run() -> list[uuid.UUID]:
        with ctx.effects_of("orders.place:req-1"):
            return [ctx.effect_id(), ctx.effect_id()]
    first, again = run(), run()
    assert first == again and first[0] != first[1]
    with ctx.effects_of("orders.place:req-2"):
        assert ctx.effect_id() not in first
    assert ctx.effect_id() != ctx.effect_id()  # outside any work: random


@pytest.mark.parametrize("exc,transient", [
    (asyncpg.DeadlockDetectedError(), True), (asyncpg.SerializationError(), True),
    (ConnectionRefusedError(), True), (TimeoutError(), True), (BrokerUnavailable("gone"), True),
    (asyncpg.ConnectionDoesNotExistError("closed mid-query"), True),
    (asyncpg.UniqueViolationError(), False), (ValueError("bad data"), False), (KeyError("x"), False),
    (asyncpg.InterfaceError("the server expects 1 argument, 0 were passed"), False),
    (FileNotFoundError("no such template"), False),
])
def test_what_counts_as_transient(exc, transient):
    assert is_transient(exc) is transient


def test_backoff_doubles_up_to_its_cap_with_jitter():
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1), (1, 2), (2, 4), (10, 30)]:
        delays = [backoff(attempt, 1, 30, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread, not one value


def test_subjects_name_what_a_request_names_and_are_kept_only_as_keyed_hashes():
    anna = uuid.uuid4()
    subjects = subjects_of(DataSubject(emails=["Anna@Example.LV"], phones=["+37120000001"]), [anna])
    assert [str(s) for s in subjects] == [f"customer:{anna}", "email:anna@example.lv", "phone:+37120000001"]
    assert Subject.parse(str(subjects[1])) == subjects[1] and Subject.parse("nonsense") is None
    assert not subjects[0].reusable and subjects[1].reusable
    keys, other = SubjectKeys(b"one"), SubjectKeys(b"two")
    assert keys(subjects[1]) == keys(Subject.email("anna@example.lv")) != other(subjects[1])
    assert b"anna" not in keys(subjects[1])


@pytest.mark.parametrize("text,safe", [
    ('{"args": [1], "kwargs": {}}', True), ('"\\u0000"', False), ('"\\uDC00"', False),
    ('"\\ud83d\\ude00"', False),  # a valid pair: walked, then accepted
    ("12345678901234567890", False), ("[" * 33 + "]" * 33, False), ("[" * 32 + "]" * 32, True),
])
def test_text_that_needs_no_walk(text, safe):
    assert inputs.plainly_safe(text) is safe
    if not safe and text.startswith('"\\ud83d'):
        assert inputs.unsafe_values(inputs.loads(text), "body") == []


def test_work_queues_are_quorum_queues_with_a_delivery_limit_and_dead_letters():
    main, dead, retry = topology.event_queues("accounts", "profile_changed", "marketing", "on_profile")
    assert main.name == "evt-accounts-profile_changed--marketing.on_profile"
    assert main.arguments["x-queue-type"] == "quorum" and main.arguments["x-delivery-limit"] == topology.DELIVERY_LIMIT
    assert main.bindings == (("accounts.events", "profile_changed"),)
    assert dead.bindings == (("veikals.dead-letter", main.name),)
    assert retry.arguments == {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": main.name}
    rpc, rpc_dead = topology.rpc_queues("orders")
    assert rpc.bindings == (("nameko-rpc", "orders.*"),) and rpc_dead.name == "rpc-orders.dead-letter"
