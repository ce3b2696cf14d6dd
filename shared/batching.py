"""Group commit: what many requests write at once goes to the database as one statement.

A request hands its item to ``GroupCommit.submit`` and waits for its result. When no batch is
being written, the item goes at once, alone; while one is, items gather and go together in the
next, so under load one statement and one commit serve many requests (PostgreSQL spends most of
a small write on the statement, the commit and its locks, and writers of the same rows queue
for them), and an idle service adds no wait.

Items that ``conflict`` (share a key) never go in the same batch; the later waits for the next.
A request that stops waiting before its item was taken leaves it out; once taken, the item is
written whatever the request does.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Result]]], *, limit: int = 64,
                 key: Callable[[Item], Hashable] | None = None, writers: int = 1) -> None:
        """``write`` stores a batch (at most ``limit`` items, no two with the same ``key``) and
        returns a result for each item; ``writers`` batches are written at a time."""
        self._write = write
        self._limit = limit
        self._key = key
        self._writers = writers
        self._waiting: list[tuple[Item, Hashable, asyncio.Future[Result]]] = []
        self._running = 0  # batches being written, counted down as each writer ends (not a step later)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        key = None if self._key is None else self._key(item)  # a bad item fails its own request here
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, key, future))
        if self._running < self._writers:
            self._running += 1
            task = asyncio.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch, keys, rest = [], set(), []
        for item, key, future in self._waiting:
            if future.done():  # its request stopped waiting
                continue
            if len(batch) == self._limit or (key is not None and key in keys):
                rest.append((item, key, future))
                continue
            keys.add(key)
            batch.append((item, future))
        self._waiting = rest
        return batch

    async def _run(self) -> None:
        try:
            while batch := self._take():
                try:
                    results = await self._write([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # every request of the batch hears of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running -= 1
