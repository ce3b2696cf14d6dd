"""The orders service's own settings (``VEIKALS_ORDERS_*``), beside the common ones."""
from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings


class OrdersSettings(ServiceSettings):
    # The seller as Latvian invoices name it (Accounting Law, VAT Law art. 125).
    seller_name: str = "SIA Veikals"
    seller_registration_number: str = "40000000000"
    seller_vat_number: str = "LV40000000000"
    seller_address: str = "Brīvības iela 1, Rīga, LV-1010, Latvija"
    # The accounting partner invoices go to; empty: the one registered partner of kind accounting.
    accountant: str = ""
    # P24: after a complaint is resolved, the customer's order data stays held this long (the
    # consumer's two years to claim under the Consumer Rights Protection Law, art. 28).
    complaint_hold_days: int = Field(default=730, ge=0)
    retention_sweep_s: float = Field(default=3600.0, gt=0)
