"""The orders service's entrypoints."""
from pathlib import Path

from services.orders.privacy import INVENTORY
from shared.service import Service


class OrdersService(Service):
    name = "orders"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
