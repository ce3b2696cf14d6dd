"""Group commit: what arrives while a batch is written goes together in the next."""
from __future__ import annotations

import asyncio

import pytest

from shared.batching import GroupCommit


class Store:
    """Writes batches only when let go, and records them."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.go = asyncio.Event()
        self.fail: Exception | None = None

    async def write(self, items: list[str]) -> list[str]:
        self.batches.append(items)
        await self.go.wait()
        if self.fail is not None:
            raise self.fail
        return [item.upper() for item in items]


async def started(store: Store, batches: int) -> None:
    while len(store.batches) < batches:
        await asyncio.sleep(0)


async def test_an_item_alone_goes_at_once_and_the_rest_wait_for_the_next_batch():
    store = Store()
    commit = GroupCommit(store.write)
    first = asyncio.create_task(commit.submit("a"))
    await started(store, 1)
    rest = [asyncio.create_task(commit.submit(item)) for item in "bcd"]
    await asyncio.sleep(0)
    assert store.batches == [["a"]]
    store.go.set()
    assert await first == "A" and await asyncio.gather(*rest) == ["B", "C", "D"]
    assert store.batches == [["a"], ["b", "c", "d"]]


async def test_a_batch_holds_at_most_limit_items_and_never_two_with_one_key():
    store = Store()
    commit = GroupCommit(store.write, limit=2, key=lambda item: item[0])
    first = asyncio.create_task(commit.submit("x0"))
    await started(store, 1)
    rest = [asyncio.create_task(commit.submit(item)) for item in ("a1", "a2", "b1", "c1")]
    await asyncio.sleep(0)
    store.go.set()
    assert await asyncio.gather(first, *rest) == ["X0", "A1", "A2", "B1", "C1"]
    assert store.batches == [["x0"], ["a1", "b1"], ["a2", "c1"]]


async def test_every_request_of_a_failed_batch_hears_of_it_and_the_next_batch_goes():
    store = Store()
    commit = GroupCommit(store.write)
    store.fail = RuntimeError("database gone")
    first = asyncio.create_task(commit.submit("a"))
    await started(store, 1)
    rest = [asyncio.create_task(commit.submit(item)) for item in "bc"]
    store.go.set()
    for task in (first, *rest):
        with pytest.raises(RuntimeError, match="database gone"):
            await task
    store.fail = None
    assert await commit.submit("d") == "D"
    assert store.batches == [["a"], ["b", "c"], ["d"]]


async def test_an_item_whose_request_stopped_waiting_before_it_was_taken_is_not_written():
    store = Store()
    commit = GroupCommit(store.write)
    first = asyncio.create_task(commit.submit("a"))
    await started(store, 1)
    gone, kept = asyncio.create_task(commit.submit("b")), asyncio.create_task(commit.submit("c"))
    await asyncio.sleep(0)
    gone.cancel()
    store.go.set()
    assert await first == "A" and await kept == "C"
    assert store.batches == [["a"], ["c"]]


async def test_writers_write_that_many_batches_at_once():
    store = Store()
    commit = GroupCommit(store.write, writers=2)
    tasks = [asyncio.create_task(commit.submit("a"))]
    await started(store, 1)
    tasks.append(asyncio.create_task(commit.submit("b")))
    await started(store, 2)
    tasks.append(asyncio.create_task(commit.submit("c")))
    await asyncio.sleep(0)
    assert store.batches == [["a"], ["b"]]
    store.go.set()
    assert await asyncio.gather(*tasks) == ["A", "B", "C"]


async def test_a_write_that_answers_for_fewer_items_fails_each_request_instead_of_leaving_one_waiting():
    async def short(items: list[str]) -> list[str]:
        return items[:-1]
    commit = GroupCommit(short)
    with pytest.raises(RuntimeError, match="1 results for a batch of 2"):
        await asyncio.gather(commit.submit("a"), commit.submit("b"))
    assert await asyncio.wait_for(asyncio.gather(commit.submit("c"), return_exceptions=True), 1)
