"""A background loop over a table: woken by PostgreSQL NOTIFY, polling otherwise, pruning hourly.

The outbox relay and the webhook delivery worker are both this: ``work()`` drains what is due
each time the loop wakes, and ``prune()`` deletes what has been kept long enough.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

PRUNE_EVERY = dt.timedelta(hours=1)


class NotifiedPoller:
    def __init__(self, pool: asyncpg.Pool, channel: str, name: str, poll_interval: float,
                 min_interval: float = 0.0) -> None:
        self.pool = pool
        self.channel = channel
        self.name = name
        self.poll_interval = poll_interval
        # Passes start at most this often: under load, the notifications of many commits are
        # handled by one pass (a batch) instead of a pass each; when idle, a pass starts at once.
        self.min_interval = min_interval
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def work(self) -> None:
        """Handle what is due now."""
        raise NotImplementedError

    async def prune(self) -> None:
        """Delete what has been kept long enough."""

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` is called: a long pass should end at its next step."""
        return self._stopping

    def wake(self, *_: Any) -> None:
        self._wake.set()

    def next_wait(self) -> float:
        """How long to wait for a wake-up before the next pass."""
        return self.poll_interval

    async def start(self) -> None:
        self._stopping = False
        await self._listen()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _listen(self) -> None:
        """(Re)open the LISTEN connection; one lost with the database is given back first."""
        if self._listener is not None:
            if not self._listener.is_closed():
                return
            try:
                await self.pool.release(self._listener)
            except Exception:
                pass
            self._listener = None
        listener = await self.pool.acquire()
        try:
            await listener.add_listener(self.channel, self.wake)
        except BaseException:
            await self.pool.release(listener)
            raise
        self._listener = listener

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the loop: the pass in hand may finish within ``grace`` seconds (a pass cut
        short is redone by the next start), then it is cancelled. Work in the subclass's own
        tasks is the subclass's to finish."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._listener is not None:
            try:
                await self._listener.remove_listener(self.channel, self.wake)
            except Exception:
                pass
            await self.pool.release(self._listener)
            self._listener = None

    async def _run(self) -> None:
        pruned_at, started = None, -self.min_interval
        while not self._stopping:
            if (wait := started + self.min_interval - asyncio.get_running_loop().time()) > 0:
                await asyncio.sleep(wait)
            started = asyncio.get_running_loop().time()
            try:
                await self._listen()  # a LISTEN connection lost with the database comes back
                await self.work()
                now = dt.datetime.now(dt.timezone.utc)
                if pruned_at is None or now - pruned_at > PRUNE_EVERY:
                    await self.prune()
                    pruned_at = now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background pass failed", loop=self.name)
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.next_wait())
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
