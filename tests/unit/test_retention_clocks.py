"""Every category of data kept for a declared period, in every service and in what shared/ adds
to each, says how its retention clock is read: the retention report has a row for each."""
import pytest

from services.topology import service_classes
from shared.contracts.privacy import DataInventory
from shared.retention import SHARED_CLOCKS, unclocked
from shared.service import SHARED_INVENTORY


@pytest.mark.parametrize("service", service_classes(), ids=lambda cls: cls.name)
def test_every_entry_with_a_period_has_a_clock_and_every_clock_an_entry(service):
    inventory = DataInventory(participant=service.name, entries=[*service.inventory.entries, *SHARED_INVENTORY])
    clocks = {**SHARED_CLOCKS, **service.retention_clocks}
    missing = [(e.table, e.category) for e in unclocked(inventory, clocks)]
    assert missing == [], f"declare how the clock of each is read, beside the {service.name} inventory"
    with_period = {(e.table, e.category) for e in inventory.entries if e.retention.period_days}
    assert set(clocks) - with_period == set(), "clocks of no entry with a period (renamed, or its period dropped?)"
