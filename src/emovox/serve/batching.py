"""Dynamic micro-batching: requests that arrive while the model is busy share one forward pass.

A :class:`MicroBatcher` owns ``workers`` threads. Items submitted from the event loop wait
in a queue; whenever a worker is free it takes up to ``max_batch`` of them and runs the
batch function on that list in its thread. A batch that is not full waits for more
items, but never longer than ``max_wait_s`` after its oldest item arrived, so items that
queued while the previous batch ran go at once: an item waits for the batch running
when it arrived, and for nothing else unless more than ``max_batch`` items queue ahead of it.
An item that arrives while no batch runs goes at once when the batcher is quiet (no batch
ended in the last :data:`QUIET_WAITS` waits) or when the last batches held about one item
each (:data:`ALONE_MEAN`): nobody comes to share its batch, so an occasional request, or one
client sending one request after another, pays no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from emovox.errors import ConfigError

QUIET_WAITS = 5  # a batcher idle for this many max_wait_s is quiet: an item arriving then goes alone, at once
ALONE_MEAN = 1.5  # so does one arriving when no batch runs and recent batches held fewer items than this on average
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    arrived: float


class MicroBatcher(Generic[T, R]):
    """Run ``fn(list of items) -> list of results`` on batches of concurrently submitted items.

    Parameters
    ----------
    fn : callable
        Scores a list of items in one go and returns one result per item, in order. It runs
        in the batcher's own thread; an exception it raises goes to every caller of the batch.
    max_batch : int
        Most items per call of ``fn``.
    max_wait_s : float
        Longest time, in seconds, a batch that is not full waits for more items.
    workers : int
        Batches run side by side (each in a thread of its own; one per core pays when the
        batch function releases the GIL, as torch and onnxruntime do).

    Examples
    --------
    >>> async def main():
    ...     async with MicroBatcher(lambda xs: [2 * x for x in xs], max_batch=8, max_wait_s=0.002) as b:
    ...         return await asyncio.gather(*(b.submit(i) for i in range(3)))
    >>> asyncio.run(main())
    [0, 2, 4]
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], *, max_batch: int, max_wait_s: float, workers: int = 1):
        if max_batch < 1 or workers < 1:
            raise ConfigError(f"max_batch and workers must be at least 1, got {max_batch} and {workers}")
        if max_wait_s < 0:
            raise ConfigError(f"max_wait_s cannot be negative, got {max_wait_s}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emovox-batch")
        self.batches = 0  # calls of fn so far
        self.items = 0  # items in them
        self._items: deque[_Pending] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._free: asyncio.Semaphore | None = None  # workers not running a batch
        self._busy = 0  # batches being scored
        self._idle_since = float("-inf")  # loop time when the last batch to run ended
        self._mean_size = 1.0  # items per batch, a moving average over about the last 4 batches
        self._running: set[asyncio.Task] = set()

    @property
    def pending(self) -> int:
        """Items waiting for a batch (not counting the batch being scored)."""
        return len(self._items)

    async def __aenter__(self) -> MicroBatcher[T, R]:
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="emovox-batcher")
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running):
            task.cancel()
        for p in self._items:
            p.future.cancel()
        self._items.clear()
        self.executor.shutdown(wait=False)

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (its batch's ``fn`` raising raises here)."""
        if self._arrived is None:
            raise RuntimeError("MicroBatcher used outside `async with`")
        loop = asyncio.get_running_loop()
        pending = _Pending(item, loop.create_future(), loop.time())
        self._items.append(pending)
        self._arrived.set()
        return await pending.future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._free.acquire()  # a worker is free: gather its batch
            await self._gather(loop)
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            batch = [p for p in batch if not p.future.done()]  # callers that went away
            if not batch:
                self._free.release()
                continue
            self.batches += 1
            self.items += len(batch)
            self._busy += 1
            task = loop.create_task(self._run(loop, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            results = await loop.run_in_executor(self.executor, self._call, [p.item for p in batch])
        except asyncio.CancelledError:  # shutting down
            for p in batch:
                p.future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch, not hidden
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._mean_size += (len(batch) - self._mean_size) / 4
            self._busy -= 1
            if not self._busy:
                self._idle_since = loop.time()
            self._free.release()
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    def _call(self, items: list[T]) -> list[R]:
        results = list(self.fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} items")
        return results

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Return when a batch should start: full, its oldest item has waited ``max_wait_s``, or
        no batch runs and nobody is likely to join it (see the module's docstring)."""
        while len(self._items) < self.max_batch:
            delay = None
            if self._items:
                quiet = self._items[0].arrived - self._idle_since > QUIET_WAITS * self.max_wait_s
                if not self._busy and (quiet or self._mean_size < ALONE_MEAN):
                    return
                delay = self._items[0].arrived + self.max_wait_s - loop.time()
                if delay <= 0:
                    return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), delay)
            except asyncio.TimeoutError:
                return
