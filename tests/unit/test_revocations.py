"""Which tokens a service refuses after accounts revoked access (shared/revocations.py), and how
the verifier answers them: no I/O, a clock of the test's own."""
import datetime as dt
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.accounts.domain import access_revoked
from shared.auth import AUDIENCE, ISSUER, TokenVerifier
from shared.http import HTTPProblem
from shared.revocations import AccessRevoked, Revocations

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
TTL = 900
ANNA, BERTA = str(uuid.uuid4()), str(uuid.uuid4())
PHONE, LAPTOP = str(uuid.uuid4()), str(uuid.uuid4())


class Clock:
    def __init__(self, at: dt.datetime = T0) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def revoked(account: str, session: str | None, at: dt.datetime = T0, ttl: int = TTL) -> AccessRevoked:
    return access_revoked(uuid.UUID(account), None if session is None else uuid.UUID(session), at, "test", ttl)


def issued(seconds_before: float) -> float:
    """A token's ``iat``: whole seconds, as PyJWT writes it."""
    return float(int(T0.timestamp() - seconds_before))


def test_a_session_revocation_refuses_that_sessions_tokens_only():
    revocations = Revocations(Clock())
    revocations.add(revoked(ANNA, PHONE))
    assert revocations.refuses(ANNA, PHONE, issued(60))
    assert not revocations.refuses(ANNA, LAPTOP, issued(60))  # her other session goes on
    assert not revocations.refuses(BERTA, PHONE, issued(60))  # a session id names its account too


def test_an_account_revocation_refuses_every_session_and_tokens_without_a_session():
    revocations = Revocations(Clock())
    revocations.add(revoked(ANNA, None))
    assert revocations.refuses(ANNA, PHONE, issued(1))
    assert revocations.refuses(ANNA, LAPTOP, issued(600))
    assert revocations.refuses(ANNA, None, issued(1))
    assert not revocations.refuses(BERTA, PHONE, issued(1))


def test_a_token_issued_after_the_revocation_passes_and_one_without_iat_does_not():
    revocations = Revocations(Clock(T0 + dt.timedelta(seconds=5)))
    revocations.add(revoked(ANNA, None))
    assert revocations.refuses(ANNA, PHONE, T0.timestamp())  # the same instant: refused
    assert not revocations.refuses(ANNA, PHONE, T0.timestamp() + 2)  # signed in again afterwards
    assert revocations.refuses(ANNA, PHONE, None)  # cannot show it came later


def test_an_entry_is_forgotten_when_the_last_token_it_covers_has_expired():
    clock = Clock()
    revocations = Revocations(clock)
    revocations.add(revoked(ANNA, PHONE))
    clock.advance(TTL - 1)
    assert revocations.refuses(ANNA, PHONE, issued(0)) and len(revocations) == 1
    clock.advance(1)
    assert not revocations.refuses(ANNA, PHONE, issued(0)) and len(revocations) == 0
    clock.advance(60)
    revocations.add(revoked(BERTA, LAPTOP, at=T0 + dt.timedelta(seconds=TTL + 61)))  # prunes the old one
    assert list(revocations._entries) == [(BERTA, LAPTOP)]


def test_one_already_expired_is_not_kept():
    clock = Clock(T0 + dt.timedelta(seconds=TTL + 1))
    revocations = Revocations(clock)
    revocations.add(revoked(ANNA, None))
    assert len(revocations) == 0 and revocations._entries == {}


def test_the_same_key_twice_keeps_the_later_instant_and_expiry_in_either_order():
    for first, second in ((0, 300), (300, 0)):
        clock = Clock(T0 + dt.timedelta(seconds=300))
        revocations = Revocations(clock)
        revocations.add(revoked(ANNA, None, at=T0 + dt.timedelta(seconds=first)))
        revocations.add(revoked(ANNA, None, at=T0 + dt.timedelta(seconds=second)))
        assert revocations.refuses(ANNA, PHONE, T0.timestamp() + 299)  # covered by the later one
        clock.advance(TTL - 1)  # past the earlier one's expiry, before the later one's
        assert revocations.refuses(ANNA, PHONE, T0.timestamp() + 299)


def test_the_event_reads_as_accounts_writes_it_and_ignores_newer_fields():
    event = revoked(ANNA, PHONE).model_dump(mode="json")
    assert event["type"] == "access_revoked" and event["session_id"] == PHONE
    assert event["expires_at"] == (T0 + dt.timedelta(seconds=TTL)).isoformat().replace("+00:00", "Z")
    again = AccessRevoked.model_validate({**event, "added_later": 1})
    assert again == revoked(ANNA, PHONE)
    assert AccessRevoked.model_validate({**event, "session_id": None}).session_id is None


# --- the verifier -------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
KEYS = jwt.PyJWKSet.from_dict({"keys": [{
    **jwt.algorithms.OKPAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "EdDSA"}]})


def token(subject: str, session: str | None, issued_at: dt.datetime) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "kind": "customer", "roles": [],
              "token_use": "access", "iat": issued_at, "exp": issued_at + dt.timedelta(seconds=TTL)}
    if session is not None:
        claims["sid"] = session
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"kid": "k1"})


async def test_the_verifier_answers_a_revoked_token_401_session_ended():
    now = dt.datetime.now(dt.timezone.utc)
    revocations = Revocations()
    verifier = TokenVerifier("", keys=KEYS, revocations=revocations)
    phone, laptop = token(ANNA, PHONE, now - dt.timedelta(seconds=10)), token(ANNA, LAPTOP, now)
    assert (await verifier.verify(phone)).session == PHONE
    revocations.add(revoked(ANNA, PHONE, at=now))
    with pytest.raises(HTTPProblem) as refused:
        await verifier.verify(phone)
    assert (refused.value.problem.status, refused.value.problem.title) == (401, "Session ended")
    assert (await verifier.verify(laptop)).session == LAPTOP
    # accounts' own verifier has no list: it checks the session in its database instead
    assert (await TokenVerifier("", keys=KEYS).verify(phone)).subject == ANNA


async def test_a_forged_token_is_refused_as_invalid_before_the_list_is_asked():
    revocations = Revocations()
    revocations.add(revoked(ANNA, None, at=dt.datetime.now(dt.timezone.utc)))
    forged = jwt.encode({"sub": ANNA, "iss": ISSUER, "aud": AUDIENCE, "token_use": "access",
                         "exp": dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)},
                        Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"})
    with pytest.raises(HTTPProblem) as refused:
        await TokenVerifier("", keys=KEYS, revocations=revocations).verify(forged)
    assert refused.value.problem.title == "Invalid token"
