"""What the benchmarks share: the servers they run as subprocesses, and driving them."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import aiohttp


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of a process, in MiB (Linux /proc)."""
    lines = (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(value.split()[0]) / 1024 for key, _, value in lines if key in ("VmRSS", "VmHWM")}


async def wait_ready(http: aiohttp.ClientSession, base: str, process: subprocess.Popen,
                     path: str = "/readyz") -> None:
    """Until ``base`` answers ``path`` (the services' /readyz; the sandboxes' /healthz)."""
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"{base} exited with status {process.returncode}")
        try:
            async with http.get(f"{base}{path}") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{base} never became ready")


async def load(concurrency: int, total: int, one) -> tuple[float, list[float]]:
    """Run ``one(i)`` ``total`` times on ``concurrency`` workers: (per second, latencies in ms)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started), latencies


# --- CPU time -----------------------------------------------------------------------------------

PROGRAMS = {"postgres": "postgres", "beam.smp": "rabbitmq"}  # by /proc/<pid>/comm


def machine_busy() -> tuple[int, int] | None:
    """Busy and total jiffies of the whole machine (Linux ``/proc/stat``), None where unreadable."""
    try:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)  # idle + iowait
    return sum(jiffies) - idle, sum(jiffies)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux ``/proc``), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot(pids: dict[str, int]) -> dict[tuple[str, int], float]:
    """CPU seconds so far of our processes, and of every PostgreSQL and RabbitMQ process on the machine."""
    found = {(name, pid): cpu_seconds(pid) for name, pid in pids.items()}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if (program := PROGRAMS.get(comm.read_text().strip())) is not None:
                found[(program, int(comm.parent.name))] = cpu_seconds(int(comm.parent.name))
    return {key: seconds for key, seconds in found.items() if seconds is not None}


def cpu_per(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], n: int) -> Counter[str]:
    """CPU milliseconds per item of each name between two snapshots (a process that ended in
    between is left out)."""
    used: Counter[str] = Counter()
    for (name, pid), seconds in after.items():
        used[name] += (seconds - before.get((name, pid), 0.0)) * 1000 / n
    return used
