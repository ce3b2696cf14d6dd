"""Stock nameko as a peer, run as its own process (eventlet never shares one with asyncio).

    python -m tests.nameko_peer serve AMQP_URI EVENTS_FILE
        runs the ``nameko_peer`` service: RPC ``multiply``, ``ping`` (dispatches ``pinged``),
        ``call_probe`` (calls our ``probe`` service from inside a nameko worker) and an
        ``@event_handler("probe", "announced")`` that appends each event to EVENTS_FILE.
        Prints ``ready`` when its consumers are up.
    python -m tests.nameko_peer call AMQP_URI SERVICE
        calls SERVICE through a stock ClusterRpcProxy and prints one JSON object of outcomes.
    python -m tests.nameko_peer health AMQP_URI SERVICE [SERVICE ...]
        prints the JSON result of ``health()`` on each service.
    python -m tests.nameko_peer dispatch AMQP_URI SOURCE EVENT_TYPE JSON_DATA COUNT
        dispatches the same event COUNT times with nameko's standalone event dispatcher.
"""
import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402

from nameko.events import EventDispatcher, event_handler  # noqa: E402
from nameko.rpc import RpcProxy, rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.standalone.events import event_dispatcher  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402


class NamekoPeer:
    name = "nameko_peer"
    dispatch = EventDispatcher()
    probe = RpcProxy("probe")
    events_file = None

    @rpc
    def multiply(self, a, b):
        return a * b

    @rpc
    def ping(self, value):
        self.dispatch("pinged", {"value": value})
        return value

    @rpc
    def call_probe(self):
        return self.probe.call_stack()

    @event_handler("probe", "announced")
    def on_announced(self, data):
        with open(NamekoPeer.events_file, "a") as out:
            out.write(json.dumps(data) + "\n")


def outcome(fn):
    try:
        return {"result": fn()}
    except Exception as exc:
        return {"error": f"{type(exc).__module__}.{type(exc).__name__}", "value": str(exc),
                "exc_type": getattr(exc, "exc_type", None)}


def main(mode, uri, *rest):
    config = {"AMQP_URI": uri}
    if mode == "serve":
        NamekoPeer.events_file = rest[0]
        runner = ServiceRunner(config)
        runner.add_service(NamekoPeer)
        runner.start()
        print("ready", flush=True)
        runner.wait()
    elif mode == "call":
        service = rest[0]
        with ClusterRpcProxy(config, timeout=20) as cluster:
            proxy = getattr(cluster, service)
            print(json.dumps({
                "add": outcome(lambda: proxy.add(2, 3)),
                "remote_error": outcome(lambda: proxy.fail("no such order")),
                "unknown_method": outcome(lambda: proxy.nope()),
                "bad_arguments": outcome(lambda: proxy.add(1)),
                "unknown_service": outcome(lambda: cluster.ghost.health()),
                "call_stack": outcome(lambda: proxy.call_stack()),
                "stack_via_nameko_worker": outcome(lambda: cluster.nameko_peer.call_probe()),
                "state_changing": outcome(lambda: proxy.record(9)),
            }), flush=True)
    elif mode == "health":
        with ClusterRpcProxy(config, timeout=20) as cluster:
            print(json.dumps({s: outcome(lambda s=s: getattr(cluster, s).health()) for s in rest}),
                  flush=True)
    elif mode == "dispatch":
        source, event_type, data, count = rest
        dispatch = event_dispatcher(config)
        for _ in range(int(count)):
            dispatch(source, event_type, json.loads(data))
        print(json.dumps({"dispatched": int(count)}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
