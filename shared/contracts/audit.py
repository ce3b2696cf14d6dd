"""What every service tells the audit log (the privacy service's, P16, P17).

Each staff look at personal data, in any service, is published as ``staff_accessed`` on the
service's exchange, without a subject: the record outlives the customer's erasure. The privacy
service chains it into the audit log; it writes its own directly.
"""
from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field


class StaffAccessed(BaseModel):
    """A staff member looked at, or acted on, personal data: who, when, whose, which, why."""

    model_config = ConfigDict(frozen=True)  # extra fields (a publisher's newer version) are ignored

    access_id: uuid.UUID
    staff_id: uuid.UUID
    customer_id: uuid.UUID | None = Field(default=None, description="whose data, when it is one customer's")
    reason: str
    categories: list[str]
    at: dt.datetime
    about: str | None = Field(default=None, description="what was looked at, e.g. 'order <id>', 'delivery <id>'")
