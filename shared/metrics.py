"""Prometheus metrics shared by every service (exposed at ``/metrics``)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "veikals_http_requests_total", "HTTP requests answered",
    ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram(
    "veikals_http_request_seconds", "HTTP request latency",
    ["service", "method", "route"])
MESSAGES_HANDLED = Counter(
    "veikals_messages_handled_total",
    "AMQP messages handled, by outcome (ok, error, retried, dead_lettered, duplicate)",
    ["service", "queue", "outcome"])
MESSAGE_LATENCY = Histogram(
    "veikals_message_handling_seconds", "Time spent handling one AMQP message",
    ["service", "queue"])
PUBLISH_FAILURES = Counter(
    "veikals_publish_failures_total", "Publishes that were not confirmed or were unroutable",
    ["service", "reason"])
OUTBOX_PUBLISHED = Counter(
    "veikals_outbox_published_total", "Outbox events relayed to the broker", ["service"])
WEBHOOK_ATTEMPTS = Counter(
    "veikals_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, retry, failed, disabled)",
    ["service", "partner", "outcome"])
WEBHOOK_LATENCY = Histogram(
    "veikals_webhook_attempt_seconds", "Time from request to partner's answer", ["service", "partner"])
WEBHOOK_CALLBACKS = Counter(
    "veikals_webhook_callbacks_total", "Partner callbacks, by outcome (accepted, rejected, replayed)",
    ["service", "partner", "outcome"])
TOPOLOGY_MISMATCHES = Gauge(
    "veikals_topology_mismatches",
    "1 while a queue exists with other arguments than the service declares (it is consumed as it is)",
    ["service", "queue"])
REVOCATIONS_BEHIND = Gauge(
    "veikals_revocations_behind",
    "1 while this instance has not loaded accounts' token revocations since it started or reconnected "
    "(a token revoked meanwhile may pass until it does)", ["service"])
REVOCATIONS_HELD = Gauge(
    "veikals_revocations_held", "Revoked access tokens' entries this instance refuses (until they expire)",
    ["service"])
REVOCATION_LOADS = Counter(
    "veikals_revocation_loads_total", "Loads of the token revocations from accounts, by outcome (ok, failed)",
    ["service", "outcome"])
