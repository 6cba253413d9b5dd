"""The breakers of Knative Serving v1.23.0, for one asyncio event loop (our code, written from the rules of
pkg/queue/breaker.go and pkg/activator/net/throttler.go's infiniteBreaker).

Breaker: `max_concurrency` slots of which `capacity` are open, and `queue_depth` more requests may wait for one.
A request that finds queue and slots full is refused at once (QueueFull: the 503 "pending request queue full").
The queue-proxy builds one with capacity = containerConcurrency and queue depth = 10 x containerConcurrency; the
activator one per revision with queue depth 10000 whose capacity follows the ready pods (cc x pods).

InfiniteBreaker: the activator's breaker for containerConcurrency = 0. No limit and no queue bound: it only holds
requests while the revision has no ready pod (capacity 0) and lets them all go when one turns ready.

Waiters are woken in arrival order (a Go channel's receivers are), one per freed slot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

ERR_QUEUE_FULL = "pending request queue full"  # pkg/queue/breaker.go's ErrRequestQueueFull


class QueueFull(Exception):
    """The breaker's slots and queue are all taken."""

    def __init__(self) -> None:
        super().__init__(ERR_QUEUE_FULL)


class Breaker:
    def __init__(self, queue_depth: int, max_concurrency: int, initial_capacity: int) -> None:
        if queue_depth <= 0:
            raise ValueError(f"Queue depth must be greater than 0. Got {queue_depth}.")
        if max_concurrency < 0:
            raise ValueError(f"Max concurrency must be 0 or greater. Got {max_concurrency}.")
        if initial_capacity < 0 or initial_capacity > max_concurrency:
            raise ValueError(f"Initial capacity must be between 0 and max concurrency. Got {initial_capacity}.")
        self.total_slots = queue_depth + max_concurrency
        self.max_concurrency = max_concurrency
        self.pending = 0  # waiting + running: upstream's Breaker.inFlight
        self.running = 0  # the semaphore's in-flight count
        self._capacity = initial_capacity
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    def in_flight(self) -> int:
        return self.pending

    def _wake(self) -> None:
        while self._waiters and self.running < self._capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)

    def update_concurrency(self, size: int) -> None:
        self._capacity = min(size, self.max_concurrency)
        self._wake()

    def _release(self) -> None:
        self.running -= 1
        self.pending -= 1
        self._wake()

    def reserve(self) -> Callable[[], None] | None:
        """A slot now or nothing (upstream's Reserve): the returned callback frees it."""
        if self.pending >= self.total_slots or self.running >= self._capacity:
            return None
        self.pending += 1
        self.running += 1
        return self._release

    async def maybe(self, thunk: Callable[[], Awaitable[T]]) -> T:
        """Run `thunk` in a slot, waiting in the queue for one; QueueFull at once when the queue is full too.
        Cancelling the wait (the request's timeout) gives the queue place back."""
        if self.pending >= self.total_slots:
            raise QueueFull
        self.pending += 1
        if self.running < self._capacity and not self._waiters:
            self.running += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.running -= 1  # woken and cancelled at once: hand the slot on
                    self._wake()
                self.pending -= 1
                raise
        try:
            return await thunk()
        finally:
            self._release()


class InfiniteBreaker:
    """Capacity 0 (no ready pod: hold every request) or 1 (let everything through)."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self.pending = 0

    @property
    def capacity(self) -> int:
        return 1 if self._open.is_set() else 0

    def in_flight(self) -> int:
        return self.pending

    def update_concurrency(self, size: int) -> None:
        if size > 0:
            self._open.set()
        else:
            self._open.clear()

    async def maybe(self, thunk: Callable[[], Awaitable[T]]) -> T:
        self.pending += 1
        try:
            if not self._open.is_set():
                await self._open.wait()
            return await thunk()
        finally:
            self.pending -= 1
