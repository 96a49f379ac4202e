"""The client: starts orchestrations and asks about, signals, suspends, terminates and purges them."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import timestamp_pb2, wrappers_pb2

from durabletask import task
from durabletask.internal import json_payloads as payloads
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.internal.failures import has_failure
from durabletask.internal.grpc_channel import open_channel
from durabletask.security import TlsOptions

TItem = TypeVar("TItem")


class OrchestrationStatus(Enum):
    RUNNING = pb.ORCHESTRATION_STATUS_RUNNING
    COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED
    FAILED = pb.ORCHESTRATION_STATUS_FAILED
    TERMINATED = pb.ORCHESTRATION_STATUS_TERMINATED
    CONTINUED_AS_NEW = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
    PENDING = pb.ORCHESTRATION_STATUS_PENDING
    SUSPENDED = pb.ORCHESTRATION_STATUS_SUSPENDED

    def __str__(self) -> str:
        return self.name


class OrchestrationFailedError(Exception):
    def __init__(self, message: str, failure_details: task.FailureDetails):
        super().__init__(message)
        self._failure_details = failure_details

    @property
    def failure_details(self) -> task.FailureDetails:
        return self._failure_details


@dataclass
class OrchestrationState:
    instance_id: str
    name: str
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    serialized_input: str | None
    serialized_output: str | None
    serialized_custom_status: str | None
    failure_details: task.FailureDetails | None

    def get_input(self, expected_type: type | None = None) -> Any:
        return payloads.from_json(self.serialized_input, expected_type)

    def get_output(self, expected_type: type | None = None) -> Any:
        return payloads.from_json(self.serialized_output, expected_type)

    def get_custom_status(self, expected_type: type | None = None) -> Any:
        return payloads.from_json(self.serialized_custom_status, expected_type)

    def raise_if_failed(self) -> None:
        if self.failure_details is not None:
            raise OrchestrationFailedError(
                f"Orchestration '{self.instance_id}' failed: {self.failure_details.message}", self.failure_details)

    @classmethod
    def from_proto(cls, state: pb.OrchestrationState) -> "OrchestrationState":
        return cls(
            instance_id=state.instanceId,
            name=state.name,
            runtime_status=OrchestrationStatus(state.orchestrationStatus),
            created_at=state.createdTimestamp.ToDatetime(),
            last_updated_at=state.lastUpdatedTimestamp.ToDatetime(),
            serialized_input=payloads.unwrap(state.input),
            serialized_output=payloads.unwrap(state.output),
            serialized_custom_status=payloads.unwrap(state.customStatus),
            failure_details=task.FailureDetails.from_proto(state.failureDetails)
            if has_failure(state.failureDetails) else None,
        )


@dataclass
class OrchestrationQuery:
    created_time_from: datetime | None = None
    created_time_to: datetime | None = None
    runtime_status: list[OrchestrationStatus] | None = None
    # Some hubs misbehave without a limit, so "no limit" is the largest int32.
    max_instance_count: int | None = (1 << 31) - 1
    fetch_inputs_and_outputs: bool = False
    instance_id_prefix: str | None = None


@dataclass
class PurgeInstancesResult:
    deleted_instance_count: int
    is_complete: bool | None


@dataclass
class Page(Generic[TItem]):
    items: list[TItem]
    continuation_token: str | None


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class TaskHubGrpcClient:
    def __init__(self, *,
                 host_address: str | None = None,
                 metadata: list[tuple[str, str]] | None = None,
                 log_handler: logging.Handler | None = None,
                 log_formatter: logging.Formatter | None = None,
                 logger: logging.Logger | None = None,
                 channel: grpc.Channel | None = None,
                 secure_channel: bool = False,
                 interceptors: list | None = None,
                 default_version: str | None = None,
                 tls_options: TlsOptions | None = None):
        """`channel`: a channel of your own, used as it is (host_address, secure_channel, interceptors
        and tls_options are then ignored) and left open by close(). `tls_options`: TLS with a private CA
        or a client certificate (durabletask.security)."""
        self._owns_channel = channel is None
        self._channel = channel or open_channel(host_address, secure_channel, interceptors, tls_options)
        self._stub = stubs.TaskHubSidecarServiceStub(self._channel)
        self._metadata = metadata
        self._logger = logger or logging.getLogger("durabletask.client")
        if log_handler is not None:
            if log_formatter is not None:
                log_handler.setFormatter(log_formatter)
            self._logger.addHandler(log_handler)
        self.default_version = default_version

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "TaskHubGrpcClient":
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def schedule_new_orchestration(self, orchestrator: task.Orchestrator[Any, Any] | str, *,
                                   input: Any = None,
                                   instance_id: str | None = None,
                                   start_at: datetime | None = None,
                                   reuse_id_policy: pb.OrchestrationIdReusePolicy | None = None,
                                   tags: dict[str, str] | None = None,
                                   version: str | None = None) -> str:
        """Start an orchestration; returns its instance ID. Without `version=`, it gets the client's default."""
        if isinstance(orchestrator, str):
            name = orchestrator
        elif callable(orchestrator):
            name = task.get_name(orchestrator)
        else:
            raise TypeError("schedule_new_orchestration expects an orchestrator function or its registered name "
                            f"(str), but got a {type(orchestrator).__name__}.")
        request = pb.CreateInstanceRequest(
            name=name,
            instanceId=instance_id or uuid.uuid4().hex,
            input=payloads.to_string_value(input),
            scheduledStartTimestamp=_timestamp(start_at),
            version=payloads.wrap(version or self.default_version),
            orchestrationIdReusePolicy=reuse_id_policy,
            tags=tags,
        )
        self._logger.info("Starting new '%s' instance with ID = '%s'", name, request.instanceId)
        return self._stub.StartInstance(request, metadata=self._metadata).instanceId

    def get_orchestration_state(self, instance_id: str, *, fetch_payloads: bool = True) -> OrchestrationState | None:
        request = pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=fetch_payloads)
        return self._state(self._stub.GetInstance(request, metadata=self._metadata))

    def wait_for_orchestration_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                     timeout: float = 60) -> OrchestrationState | None:
        return self._wait(self._stub.WaitForInstanceStart, instance_id, fetch_payloads, timeout, "start")

    def wait_for_orchestration_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                          timeout: float = 60) -> OrchestrationState | None:
        return self._wait(self._stub.WaitForInstanceCompletion, instance_id, fetch_payloads, timeout, "complete")

    def raise_orchestration_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self._stub.RaiseEvent(pb.RaiseEventRequest(
            instanceId=instance_id, name=event_name, input=payloads.to_string_value(data)), metadata=self._metadata)

    def terminate_orchestration(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self._stub.TerminateInstance(pb.TerminateRequest(
            instanceId=instance_id, output=payloads.to_string_value(output), recursive=recursive),
            metadata=self._metadata)

    def suspend_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        self._stub.SuspendInstance(pb.SuspendRequest(instanceId=instance_id, reason=payloads.wrap(reason)),
                                   metadata=self._metadata)

    def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        self._stub.ResumeInstance(pb.ResumeRequest(instanceId=instance_id, reason=payloads.wrap(reason)),
                                  metadata=self._metadata)

    def purge_orchestration(self, instance_id: str, recursive: bool = True) -> PurgeInstancesResult:
        response = self._stub.PurgeInstances(pb.PurgeInstancesRequest(
            instanceId=instance_id, recursive=recursive, isOrchestration=True), metadata=self._metadata)
        return self._purge_result(response)

    def purge_orchestrations_by(self, created_time_from: datetime | None = None,
                                created_time_to: datetime | None = None,
                                runtime_status: list[OrchestrationStatus] | None = None,
                                recursive: bool = False) -> PurgeInstancesResult:
        """Delete every instance created in the time range and in one of the given statuses."""
        response = self._stub.PurgeInstances(pb.PurgeInstancesRequest(
            purgeInstanceFilter=pb.PurgeInstanceFilter(
                createdTimeFrom=_timestamp(created_time_from),
                createdTimeTo=_timestamp(created_time_to),
                runtimeStatus=[s.value for s in runtime_status or []]),
            recursive=recursive), metadata=self._metadata)
        return self._purge_result(response)

    def get_all_orchestration_states(self, orchestration_query: OrchestrationQuery | None = None
                                     ) -> list[OrchestrationState]:
        """Every instance matching the query, following continuation tokens page by page."""
        query = orchestration_query or OrchestrationQuery()
        states: list[OrchestrationState] = []
        token: wrappers_pb2.StringValue | None = None
        while True:
            response = self._stub.QueryInstances(pb.QueryInstancesRequest(query=pb.InstanceQuery(
                runtimeStatus=[s.value for s in query.runtime_status or []],
                createdTimeFrom=_timestamp(query.created_time_from),
                createdTimeTo=_timestamp(query.created_time_to),
                instanceIdPrefix=payloads.wrap(query.instance_id_prefix),
                maxInstanceCount=query.max_instance_count,
                fetchInputsAndOutputs=query.fetch_inputs_and_outputs,
                continuationToken=token,
            )), metadata=self._metadata)
            states.extend(OrchestrationState.from_proto(s) for s in response.orchestrationState)
            next_token = response.continuationToken
            # "0" and a repeated token both mean "no more pages" in hubs seen in the wild.
            if not next_token.value or next_token.value == "0" or (token is not None and token.value == next_token.value):
                return states
            token = next_token

    def list_instance_ids(self, runtime_status: list[OrchestrationStatus] | None = None,
                          completed_time_from: datetime | None = None,
                          completed_time_to: datetime | None = None,
                          page_size: int | None = None,
                          continuation_token: str | None = None) -> Page[str]:
        """One page of IDs of instances that finished, filtered by status and completion time."""
        response = self._stub.ListInstanceIds(pb.ListInstanceIdsRequest(
            runtimeStatus=[s.value for s in runtime_status or []],
            completedTimeFrom=_timestamp(completed_time_from),
            completedTimeTo=_timestamp(completed_time_to),
            pageSize=page_size or 0,
            lastInstanceKey=payloads.wrap(continuation_token),
        ), metadata=self._metadata)
        return Page(list(response.instanceIds),
                    response.lastInstanceKey.value if response.HasField("lastInstanceKey") else None)

    def _wait(self, rpc: Any, instance_id: str, fetch_payloads: bool, timeout: float,
              what: str) -> OrchestrationState | None:
        request = pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=fetch_payloads)
        try:
            return self._state(rpc(request, timeout=timeout, metadata=self._metadata))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TimeoutError(f"Timed-out waiting for the orchestration to {what}") from None
            raise

    @staticmethod
    def _purge_result(response: pb.PurgeInstancesResponse) -> PurgeInstancesResult:
        return PurgeInstancesResult(response.deletedInstanceCount,
                                    response.isComplete.value if response.HasField("isComplete") else None)

    @staticmethod
    def _state(response: pb.GetInstanceResponse) -> OrchestrationState | None:
        return OrchestrationState.from_proto(response.orchestrationState) if response.exists else None
