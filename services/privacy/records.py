"""The record of processing activities (GDPR Art. 30), built from what the code declares.

Its parts: every participant's ``privacy_inventory()`` (what each service holds, why, on what
basis, how long, who receives it), the partner registry and the processors configured outside it
(who receives which categories), the security measures below, and the trace of every clause of
the shop's policy (P1-P30, ``../shared/seed/``) to the declarations and the code that keep it.
The public notice (``notice.py``) is written from the same record. ``python -m
services.privacy.records`` writes the committed copies under ``docs/``; a test keeps them equal.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from services.privacy.document import Document, Section, markdown

from shared.auth import STAFF_ROLES
from shared.contracts.privacy import DataInventory, LegalBasis, Retention
from shared.webhooks.registry import PartnerKind, PartnerRegistry

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLAUSES = tuple(f"P{n}" for n in range(1, 31))


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Controller(_Declared):
    name: str
    contact: str = Field(description="where questions and disputes go (P30)")
    supervisory_authority: str


CONTROLLER = Controller(name="Veikals", contact="info@veikals.lv",
                        supervisory_authority="Datu valsts inspekcija (Data State Inspectorate), www.dvi.gov.lv")


class Processor(_Declared):
    """A processor (P18): a registered partner, or one the services reach by configuration."""
    name: str
    kind: PartnerKind
    data_categories: list[str]
    description: str
    source: str = Field(description="the partner registry, or the setting that names it")


# Processors reached outside the webhook registry: the PSP by its API, the e-mail relay by SMTP.
CONFIGURED_PROCESSORS = (
    Processor(name="payment service provider", kind=PartnerKind.PSP,
              data_categories=["card details (entered at the provider, never at the shop)", "amounts paid and refunded",
                               "the shop's reference of the customer"],
              description="Takes card payments, saved cards for memberships and refunds (a Stripe-compatible API)",
              source="setting VEIKALS_PAYMENTS_PSP_API_BASE"),
    Processor(name="e-mail relay", kind=PartnerKind.EMAIL,
              data_categories=["e-mail address", "text of the message"],
              description="Relays the shop's e-mail: confirmations, notices, offers to those who consent",
              source="settings VEIKALS_<SERVICE>_SMTP_HOST"),
)


class Measure(_Declared):
    """A security measure (P17), with the code that takes it (``module:name``)."""
    measure: str
    mechanism: str
    clauses: list[str]


SECURITY_MEASURES = (
    Measure(measure="Card numbers and security codes go from the customer's browser straight to the payment service "
                    "provider; our services take only its tokens and refuse any request that carries a card number",
            mechanism="shared.cards:holds_card_number", clauses=["P3", "P17"]),
    Measure(measure="Every request is authenticated with a signed access token; signing out, ending a session or "
                    "closing the account stops its tokens in every service at once",
            mechanism="shared.auth:TokenVerifier", clauses=["P17"]),
    Measure(measure="Staff see only what their role needs (support, accounting, marketing, admin)",
            mechanism="shared.auth:authorize", clauses=["P12", "P16"]),
    Measure(measure="Every staff look at personal data and every step of every request about it is written, with "
                    "who and why, to an append-only audit log whose hash chain shows any entry changed or removed",
            mechanism="services.privacy.audit:verify", clauses=["P16", "P17"]),
    Measure(measure="Passwords are kept only as Argon2id hashes", mechanism="services.accounts.domain:Passwords",
            clauses=["P17"]),
    Measure(measure="Messages to processors are signed (Standard Webhooks), and their answers are checked in constant "
                    "time within a time window", mechanism="shared.webhooks.signing:verify", clauses=["P17", "P18"]),
    Measure(measure="Logs never carry personal data or card numbers unredacted",
            mechanism="shared.logging:redact_text", clauses=["P17"]),
    Measure(measure="A change and the messages it causes are written in one transaction, so a failure leaves nothing "
                    "half-done and nothing is lost", mechanism="shared.outbox:Outbox", clauses=["P17"]),
    Measure(measure="Each retention period is kept by a scheduled sweep, not by hand",
            mechanism="shared.retention:Steps", clauses=["P22", "P23", "P24", "P25"]),
    Measure(measure="Secrets come from the environment, never from the code", mechanism="shared.config:load_settings",
            clauses=["P17"]),
)


class Trace(_Declared):
    """How a clause of the policy is kept: the code that keeps it (``module:name``)."""
    clause: str
    promise: str
    mechanisms: list[str] = Field(min_length=1)


TRACE = (
    Trace(clause="P1", promise="name, phone and e-mail are processed",
          mechanisms=["services.accounts.privacy:INVENTORY", "services.orders.privacy:INVENTORY"]),
    Trace(clause="P2", promise="the delivery address is processed",
          mechanisms=["services.accounts.privacy:INVENTORY", "services.orders.lifecycle:Lifecycle.ship"]),
    Trace(clause="P3", promise="card data is processed, by the payment service provider only",
          mechanisms=["shared.cards:holds_card_number", "services.payments.psp:Psp"]),
    Trace(clause="P4", promise="costs and payment data (purchase history) are processed",
          mechanisms=["services.orders.privacy:INVENTORY", "services.payments.privacy:INVENTORY"]),
    Trace(clause="P5", promise="data is used to manage orders and deliver goods",
          mechanisms=["services.orders.lifecycle:Lifecycle.ship"]),
    Trace(clause="P6", promise="purchase history gives a summary and preference analysis",
          mechanisms=["services.orders.api:OrdersApi.summary", "services.marketing.privacy:INVENTORY"]),
    Trace(clause="P7", promise="card data is used for refunds, one-time purchases and monthly membership payments",
          mechanisms=["services.payments.charges:Charges.reserve_refund", "services.payments.billing:Billing.charge_due"]),
    Trace(clause="P8", promise="contact data is used to resolve questions about supply",
          mechanisms=["services.orders.lifecycle:Lifecycle.open_complaint"]),
    Trace(clause="P9", promise="IP addresses and web identifiers serve the shop and its usage statistics",
          mechanisms=["services.accounts.domain:network_of"]),
    Trace(clause="P10", promise="processing to perform the contract",
          mechanisms=["shared.contracts.privacy:LegalBasis.CONTRACT"]),
    Trace(clause="P11", promise="processing to fulfil legal obligations (accounting, complaints)",
          mechanisms=["shared.contracts.privacy:LegalBasis.LEGAL_OBLIGATION", "services.orders.lifecycle:Lifecycle.issue_invoice"]),
    Trace(clause="P12", promise="customer support receives data to help the customer",
          mechanisms=["services.accounts.api:AccountsApi.lookup_customer", "services.orders.api:OrdersApi.lookup"]),
    Trace(clause="P13", promise="only the carrier the customer chose receives name, phone and e-mail",
          mechanisms=["services.orders.lifecycle:Lifecycle.ship"]),
    Trace(clause="P14", promise="the bookkeeping provider receives what accounting needs",
          mechanisms=["services.orders.lifecycle:Lifecycle.issue_invoice"]),
    Trace(clause="P15", promise="IT and hosting providers receive what the shop needs to run",
          mechanisms=["services.privacy.domain:PROCESSOR_KINDS"]),
    Trace(clause="P16", promise="employees access data for technical questions and support, and every look is recorded",
          mechanisms=["services.privacy.audit:Chainer", "shared.http:Endpoint"]),
    Trace(clause="P17", promise="appropriate security measures", mechanisms=["services.privacy.records:SECURITY_MEASURES"]),
    Trace(clause="P18", promise="processors work under contract and with security measures; each is registered",
          mechanisms=["shared.webhooks.registry:PartnerRegistry", "shared.webhooks.signing:verify"]),
    Trace(clause="P19", promise="cookies and similar technologies, told in the cookie notice",
          mechanisms=["web.storage:STORAGE", "services.accounts.domain:network_of"]),
    Trace(clause="P20", promise="data can be seen and corrected in the profile; guests through support",
          mechanisms=["services.accounts.api:AccountsApi.change_profile", "services.privacy.api:PrivacyApi.guest_ask"]),
    Trace(clause="P21", promise="a consent can be withdrawn by e-mail to support",
          mechanisms=["services.marketing.consents:Ledger.withdraw", "services.privacy.api:PrivacyApi.staff_submit"]),
    Trace(clause="P22", promise="data goes when the account closes, except what accounting or a dispute needs",
          mechanisms=["services.privacy.service:PrivacyService.on_account_closed", "services.privacy.fanout:TaskRunner"]),
    Trace(clause="P23", promise="a guest's purchase history is kept three years",
          mechanisms=["services.orders.privacy:INVENTORY"]),
    Trace(clause="P24", promise="in a dispute, data is kept until the claim is settled or time-barred",
          mechanisms=["services.orders.domain:hold_until", "services.payments.charges:Charges.on_dispute"]),
    Trace(clause="P25", promise="accounting data is kept seven years",
          mechanisms=["shared.contracts.privacy:ACCOUNTING_PERIOD", "services.orders.domain:fiscal_until"]),
    Trace(clause="P26", promise="erasure requests are answered within one month",
          mechanisms=["services.privacy.domain:due_at", "services.privacy.fanout:TaskRunner"]),
    Trace(clause="P27", promise="portability requests are answered within one month, support identifies the person",
          mechanisms=["services.privacy.archive:stream", "services.privacy.domain:due_at"]),
    Trace(clause="P28", promise="direct marketing only with consent; a link in every message to stop it",
          mechanisms=["services.marketing.campaigns:CampaignSender", "services.marketing.domain:unsubscribe_token"]),
    Trace(clause="P29", promise="anyone may object to direct marketing and profiling at any time",
          mechanisms=["services.marketing.consents:Ledger.object"]),
    Trace(clause="P30", promise="disputes through the shop's contact address",
          mechanisms=["services.privacy.records:CONTROLLER"]),
)


class Activity(_Declared):
    participant: str
    category: str
    table: str
    fields: list[str]
    purpose: str
    legal_basis: LegalBasis
    retention: Retention
    recipients: list[str] = Field(description="staff roles and processor kinds")
    processors: list[str] = Field(description="the processors of those kinds")
    clauses: list[str]


class ClauseTrace(_Declared):
    clause: str
    promise: str
    declared_in: list[str] = Field(description="participant: category, for each declaration naming the clause")
    mechanisms: list[str]


class RecordOfProcessing(_Declared):
    controller: Controller
    activities: list[Activity]
    processors: list[Processor]
    security_measures: list[Measure]
    clauses: list[ClauseTrace]


class Unresolved(LookupError):
    """A declaration names something the code does not have."""


def processors_of(registry: PartnerRegistry) -> list[Processor]:
    """Every processor: the registered partners, then those reached by configuration."""
    registered = [Processor(name=p.name, kind=p.kind, data_categories=p.data_categories, description=p.description,
                            source="the partner registry") for p in registry]
    return [*registered, *CONFIGURED_PROCESSORS]


def resolve(mechanism: str) -> object:
    """The object ``module:name.attr`` names (``Unresolved`` if it is not there)."""
    module_name, _, path = mechanism.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise Unresolved(f"{mechanism}: {exc}") from None
    return found


def problems(inventories: Iterable[DataInventory], registry: PartnerRegistry) -> list[str]:
    """What makes the record untrue: a recipient that is neither a staff role nor a kind of
    processor we have, a clause traced to nothing, a mechanism the code lacks."""
    found = []
    kinds = {p.kind.value for p in processors_of(registry)}
    for inventory in inventories:
        for entry in inventory.entries:
            for recipient in entry.recipients:
                if recipient not in STAFF_ROLES and recipient not in kinds:
                    found.append(f"{inventory.participant}: {entry.category}: recipient {recipient!r} is no staff "
                                 "role and no processor of that kind is registered or configured")
    traced = {t.clause for t in TRACE}
    found += [f"{clause} is traced to nothing" for clause in CLAUSES if clause not in traced]
    for item in (*TRACE, *SECURITY_MEASURES):
        for mechanism in getattr(item, "mechanisms", None) or [item.mechanism]:
            try:
                resolve(mechanism)
            except Unresolved as exc:
                found.append(str(exc))
    return found


def build(inventories: Iterable[DataInventory], registry: PartnerRegistry,
          controller: Controller = CONTROLLER) -> RecordOfProcessing:
    inventories = sorted(inventories, key=lambda i: i.participant)
    processors = processors_of(registry)
    activities = [Activity(
        participant=inventory.participant, category=e.category, table=e.table, fields=e.fields, purpose=e.purpose,
        legal_basis=e.legal_basis, retention=e.retention, recipients=e.recipients,
        processors=[p.name for p in processors if p.kind.value in e.recipients], clauses=e.clauses,
    ) for inventory in inventories for e in inventory.entries]
    clauses = [ClauseTrace(
        clause=t.clause, promise=t.promise, mechanisms=t.mechanisms,
        declared_in=[f"{a.participant}: {a.category}" for a in activities if t.clause in a.clauses],
    ) for t in TRACE]
    return RecordOfProcessing(controller=controller, activities=activities, processors=processors,
                              security_measures=list(SECURITY_MEASURES), clauses=clauses)


def period(retention: Retention) -> str:
    if retention.period_days is None:
        return f"until {retention.after}"
    days = retention.period_days
    amount = f"{round(days / 365.25)} years" if days >= 360 else f"{days} day{'s' if days != 1 else ''}"
    return f"{amount} after {retention.after}"


def document(record: RecordOfProcessing) -> Document:
    """The record as staff read it (a page, and the committed Markdown)."""
    c = record.controller
    return Document(language="en", title="Record of processing activities (GDPR Art. 30)", sections=[
        Section((), "Controller", [
            "Generated from the code's declarations by `python -m services.privacy.records`; do not edit by hand.",
            f"{c.name}, {c.contact}. Supervisory authority: {c.supervisory_authority}."]),
        Section((), "Processing activities", table=(
            ["Service", "Category", "Data (table: fields)", "Purpose", "Legal basis", "Kept", "Recipients", "Clauses"],
            [[a.participant, a.category, f"{a.table}: {', '.join(a.fields)}", a.purpose, a.legal_basis.value,
              period(a.retention), ", ".join([*a.recipients, *(f"({p})" for p in a.processors)]) or "-",
              ", ".join(a.clauses) or "-"] for a in record.activities])),
        Section((), "Processors", table=(
            ["Processor", "Kind", "Receives", "What it does", "Named by"],
            [[p.name, p.kind.value, ", ".join(p.data_categories), p.description, p.source]
             for p in record.processors])),
        Section((), "Security measures",
                items=[f"{m.measure} ({m.mechanism}; {', '.join(m.clauses)})" for m in record.security_measures]),
        Section((), "The policy's clauses, traced", table=(
            ["Clause", "Promise", "Declared in", "Kept by"],
            [[t.clause, t.promise, "; ".join(t.declared_in) or "-", ", ".join(t.mechanisms)] for t in record.clauses])),
    ])


def code_inventories() -> list[DataInventory]:
    """Every participant's inventory as its code declares it (what ``privacy_inventory()``
    answers, the shared entries included)."""
    from services.topology import service_classes
    from shared.service import with_shared
    return [with_shared(cls.inventory) for cls in service_classes()]


def documents(inventories: list[DataInventory], registry: PartnerRegistry) -> dict[str, str]:
    """File name under docs/ -> content: the record (JSON, Markdown) and the notice (lv, en)."""
    from services.privacy import notice
    record = build(inventories, registry)
    return {"records-of-processing.json": json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n",
            "records-of-processing.md": markdown(document(record)),
            "privacy-notice.lv.md": markdown(notice.build(record, "lv")),
            "privacy-notice.en.md": markdown(notice.build(record, "en"))}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    for name, content in documents(code_inventories(), PartnerRegistry.load()).items():
        (target / name).write_text(content)
        print(target / name)
