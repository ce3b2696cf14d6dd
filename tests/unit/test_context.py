from shared.messaging import context as ctx


def test_worker_extends_the_callers_stack_and_keeps_other_context():
    parent = ctx.context_from_headers({
        "nameko.call_id_stack": ["standalone_rpc_proxy.call.1"], "nameko.language": "lv",
        "x-other": "ignored"})
    worker = ctx.worker_context(parent, "orders", "health")
    assert worker["language"] == "lv" and "x-other" not in worker
    assert worker["call_id_stack"][0] == "standalone_rpc_proxy.call.1"
    assert worker["call_id_stack"][1].startswith("orders.health.")


def test_stack_keeps_ten_parents_like_nameko():
    parent = {"call_id_stack": [f"s.m.{i}" for i in range(15)]}
    stack = ctx.worker_context(parent, "orders", "health")["call_id_stack"]
    assert len(stack) == 11 and stack[0] == "s.m.5"


def test_outgoing_headers_inside_and_outside_a_worker():
    outside = ctx.outgoing_headers("orders")["nameko.call_id_stack"]
    assert len(outside) == 1 and outside[0].startswith("orders.call.")
    assert outside != ctx.outgoing_headers("orders")["nameko.call_id_stack"]
    worker = ctx.worker_context({"user_id": None}, "orders", "checkout")
    token = ctx.enter_worker(worker)
    try:
        headers = ctx.outgoing_headers("orders")
    finally:
        ctx.leave_worker(token)
    assert headers == {"nameko.call_id_stack": worker["call_id_stack"]}  # None values dropped
