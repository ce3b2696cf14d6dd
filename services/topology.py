"""The topology manifest: every event handler of every service, read from the code.

A publisher declares the queues of the handlers that receive its events before it publishes
any (``OutboxRelay.start``), and ``veikals topology`` declares them all (a deploy step), so no
event goes out before the queue that should hold it exists.
"""
from __future__ import annotations

from shared.outbox import Subscription
from shared.service import Service, subscriptions_of


def service_classes() -> list[type[Service]]:
    from services.accounts.service import AccountsService
    from services.marketing.service import MarketingService
    from services.orders.service import OrdersService
    from services.payments.service import PaymentsService
    from services.privacy.service import PrivacyService
    return [AccountsService, OrdersService, PaymentsService, MarketingService, PrivacyService]


def subscriptions() -> list[Subscription]:
    return [s for cls in service_classes() for s in subscriptions_of(cls)]
