"""ExplainStream's flow control: requests are answered concurrently (so TorchServe can batch
and fuse them), answers come back as they complete, and at most ``concurrency`` requests are in
flight or answered-but-unsent: a client that stops reading stops the gateway reading its
requests (bounded buffering)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


async def answer_concurrently(requests: AsyncIterator[In],
                              answer: Callable[[In, int], Awaitable[Out]],
                              concurrency: int) -> AsyncGenerator[Out, None]:
    """``answer(request, n)`` (n counts from 1; it must not raise) for every request, yielded
    in completion order."""
    slots = asyncio.Semaphore(concurrency)
    done: asyncio.Queue = asyncio.Queue()
    running: set[asyncio.Future] = set()  # strong references until each task finishes
    pending = 0
    reading = True

    async def one(raw: In, n: int) -> None:
        await done.put(await answer(raw, n))

    async def read() -> None:
        nonlocal pending, reading
        n = 0
        try:
            async for raw in requests:
                n += 1
                await slots.acquire()  # released once its answer is written
                pending += 1
                task = asyncio.ensure_future(one(raw, n))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            reading = False
            await done.put(None)  # wake the writer to re-check

    reader = asyncio.ensure_future(read())
    try:
        while reading or pending:
            item = await done.get()
            if item is None:
                continue
            pending -= 1
            yield item
            slots.release()
    finally:
        reader.cancel()
        for task in running:
            task.cancel()
