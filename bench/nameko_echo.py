"""Stock nameko's side of ``bench/rpc.py``, run as its own processes (eventlet never shares one
with asyncio).

    python bench/nameko_echo.py serve AMQP_URI MAX_WORKERS
        runs the ``nameko_bench`` service (``echo``) and prints ``ready`` once it consumes.
    python bench/nameko_echo.py call AMQP_URI --calls N --in-flight 64,256 --in-flight-calls M \
            --warmup W --proxies P
        calls it through ``ClusterRpcProxy`` and prints one JSON object:
        ``{"sequential_s": [...], "calls_per_s": {"64": ..., "256": ...}}``.

How K calls are kept in flight needs explaining. A standalone proxy is not safe to share
between greenthreads (they would all read its one connection), so each greenthread drives a
proxy of its own through a sliding window: ``call_async`` publishes a request (waiting for the
broker's confirm, as stock nameko does) and, once its share of the K calls is out, collects the
oldest reply before publishing the next; collecting a reply drains every reply that has arrived
meanwhile. One proxy alone cannot keep the server busy (it spends its time waiting for
confirms one publish after another), so the K calls are spread over P proxies, each in its
own greenthread; sequential calls use the first proxy.
"""
import warnings

warnings.filterwarnings("ignore", message="\nEventlet is deprecated")  # printed on import

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

SERVICE = "nameko_bench"


class NamekoBench:
    name = SERVICE

    @rpc
    def echo(self, value):
        return value


def serve(uri, max_workers):
    runner = ServiceRunner({"AMQP_URI": uri, "max_workers": max_workers})
    runner.add_service(NamekoBench)
    # As `nameko run` does: stop the runner from a greenthread, not inside the signal handler.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: eventlet.spawn_n(runner.stop))
    runner.start()
    print("ready", flush=True)
    runner.wait()


def sequential(echo, calls):
    latencies = []
    for value in range(calls):
        started = time.perf_counter()
        result = echo(value)
        latencies.append(time.perf_counter() - started)
        if result != value:
            raise RuntimeError(f"echo({value!r}) returned {result!r}")
    return latencies


def share(total, parts, index):
    """Part ``index`` of ``total`` split as evenly as possible into ``parts``."""
    return total // parts + (index < total % parts)


def keep_window(echo, window_size, calls):
    window = collections.deque()
    for value in range(calls):
        if len(window) == window_size:
            window.popleft().result()
        window.append(echo.call_async(value))
    while window:
        window.popleft().result()


def in_flight(echoes, window_size, calls):
    """Calls per second with ``window_size`` calls outstanding over all ``echoes``."""
    parts = len(echoes)
    started = time.perf_counter()
    threads = [eventlet.spawn(keep_window, echo, share(window_size, parts, i),
                              share(calls, parts, i))
               for i, echo in enumerate(echoes)]
    for thread in threads:
        thread.wait()  # re-raises what the greenthread raised
    return calls / (time.perf_counter() - started)


def call(uri, calls, levels, level_calls, warmup, proxies):
    with contextlib.ExitStack() as stack:
        clusters = [stack.enter_context(ClusterRpcProxy({"AMQP_URI": uri}, timeout=60))
                    for _ in range(proxies)]
        echoes = [getattr(cluster, SERVICE).echo for cluster in clusters]
        in_flight(echoes, levels[0], warmup)
        results = {
            "sequential_s": sequential(echoes[0], calls),
            "calls_per_s": {str(k): in_flight(echoes, k, level_calls) for k in levels},
        }
    print(json.dumps(results), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    serving = modes.add_parser("serve")
    serving.add_argument("uri")
    serving.add_argument("max_workers", type=int)
    calling = modes.add_parser("call")
    calling.add_argument("uri")
    calling.add_argument("--calls", type=int, required=True)
    calling.add_argument("--in-flight", required=True, help="comma-separated window sizes")
    calling.add_argument("--in-flight-calls", type=int, required=True)
    calling.add_argument("--warmup", type=int, required=True)
    calling.add_argument("--proxies", type=int, required=True)
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.uri, args.max_workers)
    else:
        levels = [int(k) for k in args.in_flight.split(",")]
        call(args.uri, args.calls, levels, args.in_flight_calls, args.warmup, args.proxies)


if __name__ == "__main__":
    main()
