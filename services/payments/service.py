"""The payments service's entrypoints."""
from pathlib import Path

from services.payments.privacy import INVENTORY
from shared.service import Service


class PaymentsService(Service):
    name = "payments"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
