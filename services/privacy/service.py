"""The privacy service's entrypoints."""
from pathlib import Path

from services.privacy.privacy import INVENTORY
from shared.service import Service


class PrivacyService(Service):
    name = "privacy"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
