"""The marketing service's entrypoints."""
from pathlib import Path

from services.marketing.privacy import INVENTORY
from shared.service import Service


class MarketingService(Service):
    name = "marketing"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
