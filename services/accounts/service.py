"""The accounts service's entrypoints."""
from pathlib import Path

from services.accounts.privacy import INVENTORY
from shared.service import Service


class AccountsService(Service):
    name = "accounts"
    migrations = Path(__file__).parent / "migrations"
    inventory = INVENTORY
