"""What the benchmarks share for the servers they run as subprocesses."""
from __future__ import annotations

import contextlib
import subprocess
import uuid
from typing import Iterator


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def bench_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of the benchmark's own (its name), deleted afterwards."""
    name = f"veikals-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)
