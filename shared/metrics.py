"""Prometheus metrics shared by every service (exposed at ``/metrics``)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

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
