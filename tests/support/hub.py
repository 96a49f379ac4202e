"""Helpers for tests that drive a task hub store or server by hand, playing the worker's part."""

import asyncio
import functools
import queue
import threading
from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf import timestamp_pb2, wrappers_pb2

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs


def run_async(test):
    """Run an `async def` test function on a fresh event loop (no pytest plugin needed)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return run


def text(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def at(seconds_from_now: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now))
    return ts


def schedule(task_id: int, name: str, data: str | None = None) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=task_id, scheduleTask=pb.ScheduleTaskAction(name=name, input=text(data)))


def timer(task_id: int, seconds_from_now: float) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=task_id, createTimer=pb.CreateTimerAction(fireAt=at(seconds_from_now)))


def sub_orchestration(task_id: int, instance_id: str, name: str) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=task_id, createSubOrchestration=pb.CreateSubOrchestrationAction(
        instanceId=instance_id, name=name))


def complete(output: str | None = None, status: int = pb.ORCHESTRATION_STATUS_COMPLETED,
             failure: pb.TaskFailureDetails | None = None, **extra) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=-1, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=status, result=text(output), failureDetails=failure, **extra))


def continue_as_new(new_input: str, **extra) -> pb.OrchestratorAction:
    return complete(new_input, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, **extra)


def episode(instance_id: str, token: str, *actions: pb.OrchestratorAction,
            custom_status: str | None = None) -> pb.OrchestratorResponse:
    return pb.OrchestratorResponse(instanceId=instance_id, completionToken=token, actions=actions,
                                   customStatus=text(custom_status))


def activity_result(item_request: pb.ActivityRequest, token: str, result: str | None = None,
                    failure: pb.TaskFailureDetails | None = None) -> pb.ActivityResponse:
    return pb.ActivityResponse(instanceId=item_request.orchestrationInstance.instanceId, taskId=item_request.taskId,
                               completionToken=token, result=text(result), failureDetails=failure)


def kinds(events) -> list[str]:
    """The event types of a list of HistoryEvents, e.g. ['orchestratorStarted', 'executionStarted']."""
    return [e.WhichOneof("eventType") for e in events]


class RawWorker:
    """A worker played by hand over raw stubs: one GetWorkItems stream, items collected in a queue."""

    def __init__(self, address: str, request: pb.GetWorkItemsRequest | None = None):
        self.channel = grpc.insecure_channel(address)
        self.stub = stubs.TaskHubSidecarServiceStub(self.channel)
        self._stream = self.stub.GetWorkItems(request or pb.GetWorkItemsRequest())
        self._items: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for item in self._stream:
                if not item.HasField("healthPing"):
                    self._items.put(item)
        except grpc.RpcError:
            pass  # cancelled, or the server went away

    def next(self, timeout: float = 5.0) -> pb.WorkItem:
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no work item arrived within {timeout}s") from None

    def idle(self, wait: float = 0.5) -> bool:
        """True if no work item arrives within `wait` seconds."""
        try:
            self._items.put(self._items.get(timeout=wait))
            return False
        except queue.Empty:
            return True

    def close(self) -> None:
        self._stream.cancel()
        self.channel.close()
