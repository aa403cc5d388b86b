"""A request's work stops when its client hangs up, and only then."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive

from propylon.errors import ClientDisconnected
from propylon.http.client_watch import ClientWatch


class Client:
    """The server's ``receive`` after the body was read: it answers once the client leaves."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.reads = 0

    async def receive(self) -> Message:
        self.reads += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_work_is_cancelled_and_the_block_raises_when_the_client_leaves() -> None:
    client, started, stopped = Client(), asyncio.Event(), asyncio.Event()

    async def handler() -> None:
        with ClientWatch(client.receive, grace_s=0):
            started.set()
            try:
                await asyncio.Event().wait()  # an upstream that never answers
            except asyncio.CancelledError:
                stopped.set()
                raise

    task = asyncio.create_task(handler())
    await started.wait()
    client.gone.set()
    with pytest.raises(ClientDisconnected) as raised:
        await task
    assert stopped.is_set(), "the work saw the cancellation (its finally blocks ran)"
    assert raised.value.http_status == 499 and raised.value.code == "client_disconnected"
    assert task.cancelling() == 0, "the watch withdrew its own cancellation"


async def test_a_client_that_left_during_the_grace_is_found_when_it_ends() -> None:
    client = Client()
    client.gone.set()  # already gone: the server reports it at the first read

    async def handler() -> None:
        with ClientWatch(client.receive, grace_s=0):
            await asyncio.Event().wait()

    with pytest.raises(ClientDisconnected):
        await asyncio.create_task(handler())


async def test_an_answer_within_the_grace_costs_no_watcher() -> None:
    client = Client()
    tasks_before = len(asyncio.all_tasks())
    with ClientWatch(client.receive, grace_s=3600):
        assert len(asyncio.all_tasks()) == tasks_before
        await asyncio.sleep(0)
    assert client.reads == 0, "the body's receive was never read by the watch"
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_watch_that_started_ends_with_its_block_and_the_client_keeps_connected() -> None:
    client, reading = Client(), asyncio.Event()

    async def receive() -> Message:
        reading.set()
        return await client.receive()

    with ClientWatch(receive, grace_s=0):
        await reading.wait()  # the watcher is waiting for a disconnect
    client.gone.set()  # the client leaves after its answer: nothing is cancelled
    await asyncio.sleep(0)
    me = asyncio.current_task()
    assert me is not None and me.cancelling() == 0


async def never_answered(receive: Receive, started: asyncio.Event) -> None:
    """A handler under a watch whose upstream never answers."""
    with ClientWatch(receive, grace_s=0):
        started.set()
        await asyncio.Event().wait()


async def test_a_cancellation_from_elsewhere_is_not_taken_for_the_client() -> None:
    client, started = Client(), asyncio.Event()
    task = asyncio.create_task(never_answered(client.receive, started))
    await started.wait()
    task.cancel()  # a shutdown
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_shutdown_while_the_client_leaves_still_cancels() -> None:
    client, started, answered = Client(), asyncio.Event(), asyncio.Event()

    async def receive() -> Message:
        message = await client.receive()
        answered.set()  # the watch cancels the task as soon as this returns
        return message

    task = asyncio.create_task(never_answered(receive, started))
    await started.wait()
    client.gone.set()
    await answered.wait()
    assert task.cancelling() == 1, "the watch cancelled it"
    task.cancel()  # and a shutdown cancels it too
    with pytest.raises(asyncio.CancelledError):
        await task
