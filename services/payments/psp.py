"""The PSP adapter: the official ``stripe`` package's async client, against Stripe or anything
that speaks its API (the sandbox locally). Moving to a real account is configuration.

Only tokens cross this boundary: payment-method ids, never card numbers. Every call that
creates something carries an idempotency key derived from our own record of it, so a retry
after a crash or a timeout gets the PSP's first answer instead of a second charge. Stripe's
answers come back as the small records below; its exceptions as three of ours:
``Declined`` (the card said no), ``Rejected`` (the PSP refused the request itself) and
``Unavailable`` (no answer: try again later with the same key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from services.payments.settings import PaymentsSettings
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Card:
    payment_method_id: str
    customer: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class Intent:
    id: str
    status: str  # requires_payment_method, requires_action, processing, succeeded, canceled, ...
    amount: int
    amount_received: int
    currency: str
    action_url: str | None
    failure_code: str | None
    failure_message: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: int
    metadata: dict[str, str]


class PspError(Exception):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Declined(PspError):
    """The card was declined (or needs authentication off session); ``intent`` is where it stands."""

    def __init__(self, message: str, code: str | None, intent: Intent | None) -> None:
        super().__init__(message, code)
        self.intent = intent


class Rejected(PspError):
    """The PSP refused the request (unknown id, an amount too large, a foreign card)."""


class Unavailable(PspError):
    """No usable answer (network, timeout, the PSP's own error): the same call may be retried."""


def plain(obj: Any) -> dict[str, Any]:
    """A Stripe answer as plain data (StripeObjects are not dicts)."""
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)


def intent_of(obj: Any) -> Intent:
    """Our record of a Stripe PaymentIntent (as answered, in an error or in a webhook)."""
    get = plain(obj).get
    error = get("last_payment_error") or {}
    action = get("next_action") or {}
    redirect = action.get("redirect_to_url") or {}
    return Intent(id=get("id"), status=get("status"), amount=get("amount") or 0,
                  amount_received=get("amount_received") or 0, currency=(get("currency") or "").upper(),
                  action_url=redirect.get("url"), failure_code=error.get("decline_code") or error.get("code"),
                  failure_message=error.get("message"), metadata=dict(get("metadata") or {}))


def refund_of(obj: Any) -> RefundResult:
    get = plain(obj).get
    return RefundResult(id=get("id"), status=get("status"), amount=get("amount") or 0,
                        metadata=dict(get("metadata") or {}))


class Psp:
    def __init__(self, settings: PaymentsSettings) -> None:
        self._http = stripe.AIOHTTPClient(timeout=settings.psp_timeout_s)
        # Retries are ours (the poller, with the same idempotency keys), not the client's.
        self.client = stripe.StripeClient(
            settings.psp_secret_key.get_secret_value() or "sk_unset", http_client=self._http,
            base_addresses={"api": settings.psp_api_base}, max_network_retries=0)
        self.webhook_secret = settings.psp_webhook_secret.get_secret_value()
        self.tolerance = settings.psp_webhook_tolerance_s

    async def close(self) -> None:
        await self._http.close_async()

    async def _call(self, what: str, coro):
        try:
            return await coro
        except stripe.CardError as exc:
            body = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
            intent = intent_of(body["payment_intent"]) if body.get("payment_intent") else None
            raise Declined(exc.user_message or str(exc), body.get("decline_code") or exc.code, intent) from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise Unavailable(f"{what}: {type(exc).__name__}") from None
        except stripe.APIError as exc:
            raise Unavailable(f"{what}: the PSP answered {exc.http_status}") from None
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as exc:
            raise Rejected(exc.user_message or str(exc), exc.code) from None
        except stripe.StripeError as exc:  # authentication, permission: our configuration
            log.error("the PSP refused our credentials", call=what, error=type(exc).__name__)
            raise Unavailable(f"{what}: {type(exc).__name__}") from None

    # --- customers and cards -----------------------------------------------------------------

    async def create_customer(self, key: str, reference: str) -> str:
        """A PSP customer for one of ours, known there by our opaque id only (no contact data)."""
        customer = await self._call("create customer", self.client.v1.customers.create_async(
            params={"metadata": {"veikals_customer": reference}}, options={"idempotency_key": key}))
        return customer.id

    async def delete_customer(self, psp_customer_id: str) -> None:
        """Delete the customer at the PSP (its cards go with it); one already gone is fine."""
        try:
            await self._call("delete customer", self.client.v1.customers.delete_async(psp_customer_id))
        except Rejected as exc:
            if exc.code != "resource_missing":
                raise

    async def card(self, payment_method_id: str) -> Card:
        pm = plain(await self._call("read payment method",
                                    self.client.v1.payment_methods.retrieve_async(payment_method_id)))
        card = pm.get("card") or {}
        if pm.get("type") != "card" or not card:
            raise Rejected("the payment method is not a card", "payment_method_unexpected_type")
        return Card(payment_method_id=pm["id"], customer=pm.get("customer"), brand=card.get("brand") or "unknown",
                    last4=card.get("last4") or "0000", exp_month=card.get("exp_month") or 1,
                    exp_year=card.get("exp_year") or 1970)

    async def attach(self, payment_method_id: str, psp_customer_id: str) -> None:
        await self._call("attach card", self.client.v1.payment_methods.attach_async(
            payment_method_id, params={"customer": psp_customer_id}))

    async def detach(self, payment_method_id: str) -> None:
        """Take the card off the customer at the PSP; one already detached or gone is fine."""
        try:
            await self._call("detach card", self.client.v1.payment_methods.detach_async(payment_method_id))
        except Rejected as exc:
            if exc.code not in ("resource_missing", "payment_method_unexpected_state"):
                raise

    # --- payments and refunds ----------------------------------------------------------------

    async def charge(self, key: str, *, amount: int, currency: str, payment_method: str,
                     customer: str | None, off_session: bool, return_url: str,
                     metadata: dict[str, str]) -> Intent:
        """Create and confirm a payment intent (the same ``key`` always gives the same one)."""
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "payment_method": payment_method,
            "payment_method_types": ["card"], "confirm": True, "metadata": metadata}
        if customer is not None:
            params["customer"] = customer
        if off_session:
            params["off_session"] = True
        else:
            params["return_url"] = return_url
            if customer is not None:  # a saved card, authenticated now for the charges made later without the customer
                params["setup_future_usage"] = "off_session"
        intent = await self._call("create payment", self.client.v1.payment_intents.create_async(
            params=params, options={"idempotency_key": key}))
        return intent_of(intent)

    async def intent(self, intent_id: str) -> Intent:
        return intent_of(await self._call("read payment", self.client.v1.payment_intents.retrieve_async(intent_id)))

    async def cancel(self, intent_id: str) -> Intent:
        return intent_of(await self._call("cancel payment", self.client.v1.payment_intents.cancel_async(intent_id)))

    async def refund(self, key: str, intent_id: str, amount: int, metadata: dict[str, str]) -> RefundResult:
        refund = await self._call("refund", self.client.v1.refunds.create_async(
            params={"payment_intent": intent_id, "amount": amount, "metadata": metadata},
            options={"idempotency_key": key}))
        return refund_of(refund)

    async def refund_status(self, refund_id: str) -> RefundResult:
        return refund_of(await self._call("read refund", self.client.v1.refunds.retrieve_async(refund_id)))

    # --- webhooks ----------------------------------------------------------------------------

    def verify(self, payload: bytes, signature: str | None) -> stripe.Event:
        """The event, if ``signature`` (Stripe-Signature) signs ``payload`` within the tolerance;
        raises ``stripe.SignatureVerificationError`` or ``ValueError`` otherwise."""
        return stripe.Webhook.construct_event(payload, signature, self.webhook_secret, tolerance=self.tolerance)
