"""The dispatcher against a real SQLite store, without gRPC: how a completion's refill hands out the
work it made ready, and what happens to that work when its stream is gone."""

import asyncio
import contextlib

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server.dispatcher import Dispatcher
from durabletask.server.metrics import HubMetrics
from durabletask.server.stores.base import ACCEPT_ALL, NewInstance
from durabletask.server.stores.sqlite import SqliteStore
from tests.support.hub import episode, run_async, schedule

LEASE = 30.0


@contextlib.asynccontextmanager
async def hub(tmp_path):
    """A store and its dispatcher, stopped and closed afterwards."""
    store = SqliteStore(str(tmp_path / "hub.db"))
    dispatcher = Dispatcher(store, LEASE, HubMetrics(store))
    try:
        yield store, dispatcher
    finally:
        await dispatcher.stop()
        store.close()


async def next_item(stream, timeout=2.0) -> pb.WorkItem:
    return await asyncio.wait_for(stream.outbox.get(), timeout)


async def apply(dispatcher, store, token, refill, response):
    """What the service does with a worker's completion: carry the refill (from `dispatcher.completing`),
    then hand out what it claimed. Returns the claim."""
    applied = asyncio.ensure_future(store.complete_orchestration(token, response,
                                                                 refill.request if refill else None))
    applied.add_done_callback(lambda done: dispatcher.refilled(refill, done))
    return await applied


@run_async
async def test_a_completion_hands_out_the_work_it_made_ready_in_the_same_step(tmp_path):
    async with hub(tmp_path) as (store, dispatcher):
        stream = dispatcher.open_stream(ACCEPT_ALL, 10, 10)
        await store.create_instance(NewInstance("a", "workflow"))
        token = (await next_item(stream)).completionToken  # the first item comes from a dispatcher round

        refill = dispatcher.completing(token)
        assert refill is not None
        await apply(dispatcher, store, token, refill, episode("a", token, schedule(1, "step", '"in"')))
        # Queued by the refill the completion carried: no dispatcher round was woken for it.
        assert stream.outbox.qsize() == 1
        activity = stream.outbox.get_nowait()
        assert (activity.activityRequest.name, activity.activityRequest.taskId) == ("step", 1)
        assert activity.completionToken in stream.activity_tokens


@run_async
async def test_work_refilled_for_a_stream_that_closed_meanwhile_goes_back_to_the_queue(tmp_path):
    async with hub(tmp_path) as (store, dispatcher):
        leaving = dispatcher.open_stream(ACCEPT_ALL, 10, 10)
        await store.create_instance(NewInstance("a", "workflow"))
        token = (await next_item(leaving)).completionToken
        refill = dispatcher.completing(token)
        dispatcher.close_stream(leaving)  # the worker hangs up while its completion is applied
        claimed = await apply(dispatcher, store, token, refill, episode("a", token, schedule(1, "step", '"in"')))
        assert len(claimed.activities) == 1  # the refill did lease it, for a stream that is gone

        staying = dispatcher.open_stream(ACCEPT_ALL, 10, 10)
        activity = await next_item(staying)
        assert activity.activityRequest.name == "step"
        assert leaving.outbox.empty()
