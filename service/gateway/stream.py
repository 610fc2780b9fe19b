"""ExplainStream's flow control: requests are answered concurrently (so TorchServe can batch
and fuse them), answers come back as they complete (a streamed text request's parts in its
order, interleaved with other requests' answers), and at most ``concurrency`` requests are in
flight or answered-but-unsent, with at most ``concurrency`` answers queued: a client that stops
reading stops the gateway reading its requests and TorchServe's parts (bounded buffering)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

_FINISHED = object()  # one request's answers are all queued


async def answer_concurrently(requests: AsyncIterator[In],
                              answer: Callable[[In, int], AsyncIterator[Out]],
                              concurrency: int) -> AsyncGenerator[Out, None]:
    """Every answer of ``answer(request, n)`` (n counts from 1; it must not raise; one or
    more answers per request, in its order) for every request, yielded as they come."""
    slots = asyncio.Semaphore(concurrency)
    done: asyncio.Queue = asyncio.Queue(maxsize=concurrency)
    running: set[asyncio.Future] = set()  # strong references until each task finishes
    pending = 0
    reading = True

    async def one(raw: In, n: int) -> None:
        async for out in answer(raw, n):
            await done.put(out)
        await done.put(_FINISHED)

    async def read() -> None:
        nonlocal pending, reading
        n = 0
        try:
            async for raw in requests:
                n += 1
                await slots.acquire()  # released once its last answer is written
                pending += 1
                task = asyncio.ensure_future(one(raw, n))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            reading = False
            # wake the writer to re-check; a full queue wakes it anyway
            with contextlib.suppress(asyncio.QueueFull):
                done.put_nowait(None)

    reader = asyncio.ensure_future(read())
    try:
        while reading or pending:
            item = await done.get()
            if item is None:
                continue
            if item is _FINISHED:
                pending -= 1
                slots.release()
                continue
            yield item
    finally:
        reader.cancel()
        for task in running:
            task.cancel()
