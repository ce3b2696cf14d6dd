"""What other services ask accounts over RPC, with the answer a caller's HTTP route gives when
accounts cannot tell (503) or has no such open account (404)."""
from __future__ import annotations

import uuid
from typing import Any

from shared.http import HTTPProblem
from shared.messaging import BrokerUnavailable, RpcClient, RpcTimeout


async def contact_details(rpc: RpcClient, customer_id: uuid.UUID) -> dict[str, Any]:
    """The open account's name, e-mail address, phone and language (``accounts.checkout_details``)."""
    try:
        details = await rpc.call("accounts", "checkout_details", str(customer_id))
    except (BrokerUnavailable, RpcTimeout):
        raise HTTPProblem(503, "Your account cannot be read now", "Try again in a moment.",
                          headers={"Retry-After": "5"})
    if details is None:
        raise HTTPProblem(404, "No such account", "There is no open account with this id.")
    return details
