"""What the benchmarks share for the servers they run as subprocesses."""
from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
