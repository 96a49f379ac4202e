"""What orchestrator and activity code sees: the orchestration context, durable tasks, retry policies."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.failures import failure_details, qualified_name

T = TypeVar("T")
TInput = TypeVar("TInput")
TOutput = TypeVar("TOutput")


class OrchestrationContext(ABC):
    """The orchestrator's only window on the world; everything it offers replays deterministically."""

    @property
    @abstractmethod
    def instance_id(self) -> str:
        """The ID of this orchestration instance."""

    @property
    @abstractmethod
    def parent_instance_id(self) -> str | None:
        """The ID of the orchestration that started this one as a sub-orchestration, if any."""

    @property
    @abstractmethod
    def version(self) -> str | None:
        """The version fixed on this instance when it was created (None if it has none)."""

    @property
    @abstractmethod
    def current_utc_datetime(self) -> datetime:
        """The replay-safe current time (naive UTC): when the current episode began."""

    @property
    @abstractmethod
    def is_replaying(self) -> bool:
        """True while the orchestrator re-runs steps that already happened."""

    @abstractmethod
    def set_custom_status(self, custom_status: Any) -> None:
        """Publish a JSON-serializable status that clients can read while the instance runs."""

    @abstractmethod
    def create_timer(self, fire_at: datetime | timedelta) -> Task[None]:
        """A task that completes at `fire_at` (a UTC datetime) or after a `timedelta` from now."""

    @abstractmethod
    def call_activity(self, activity: Activity[TInput, TOutput] | str, *,
                      input: TInput | None = None,
                      retry_policy: RetryPolicy | None = None,
                      tags: dict[str, str] | None = None,
                      return_type: type | None = None) -> Task[TOutput]:
        """Schedule an activity (a function or its registered name); the task yields its result.

        The result is built into `return_type`, or else into the activity's annotated return
        type, when that is a dataclass or has a `from_json` classmethod.
        """

    @abstractmethod
    def call_sub_orchestrator(self, orchestrator: Orchestrator[TInput, TOutput] | str, *,
                              input: TInput | None = None,
                              instance_id: str | None = None,
                              retry_policy: RetryPolicy | None = None,
                              version: str | None = None,
                              return_type: type | None = None) -> Task[TOutput]:
        """Start a child orchestration; the task yields its output.

        The child gets `version`, or else the worker's default version; never the parent's.
        """

    @abstractmethod
    def wait_for_external_event(self, name: str, *, data_type: type | None = None) -> Task[Any]:
        """A task that completes with the payload of the next event named `name` (case-insensitive)."""

    @abstractmethod
    def send_event(self, instance_id: str, event_name: str, *, data: Any | None = None) -> None:
        """Raise an event on another orchestration instance (fire and forget)."""

    @abstractmethod
    def continue_as_new(self, new_input: Any, *, save_events: bool = False,
                        new_version: str | None = None) -> None:
        """Restart this instance with fresh history and `new_input` once the orchestrator returns.

        With `save_events`, external events not yet consumed are delivered to the new execution.
        The version stays the same unless `new_version` is given.
        """

    @abstractmethod
    def new_uuid(self) -> str:
        """A UUID that is the same on every replay (name-based, from instance ID, time and a counter)."""

    def create_replay_safe_logger(self, logger: logging.Logger) -> ReplaySafeLogger:
        """`logger`, silenced while the orchestrator replays, so that each message is logged once."""
        return ReplaySafeLogger(logger, lambda: self.is_replaying)


class ReplaySafeLogger(logging.LoggerAdapter):
    def __init__(self, logger: logging.Logger, is_replaying: Callable[[], bool]):
        super().__init__(logger, {})
        self._is_replaying = is_replaying

    def isEnabledFor(self, level: int) -> bool:
        return not self._is_replaying() and self.logger.isEnabledFor(level)


@dataclass(frozen=True)
class FailureDetails:
    message: str
    error_type: str
    stack_trace: str | None
    inner_failure: FailureDetails | None = None

    def is_caused_by(self, error_type: str | type[BaseException]) -> bool:
        """Whether this failure's exception was `error_type` (an exception class, its subclasses
        included, or a name, qualified or not)."""
        if isinstance(error_type, str):
            return self._names(error_type)
        if not (isinstance(error_type, type) and issubclass(error_type, BaseException)):
            raise TypeError(f"is_caused_by expects an exception type or its name, but got {error_type!r}.")
        pending, seen = [error_type], set()
        while pending:
            candidate = pending.pop()
            if candidate in seen:
                continue
            seen.add(candidate)
            if self._names(qualified_name(candidate)):
                return True
            pending.extend(candidate.__subclasses__())
        return False

    def _names(self, name: str) -> bool:
        """Whether `name` names this failure's type; unqualified names compare the class name only."""
        if not self.error_type or not name:
            return False
        if self.error_type == name:
            return True
        if "." in self.error_type and "." in name:
            return False
        return self.error_type.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]

    @classmethod
    def from_proto(cls, details: pb.TaskFailureDetails) -> FailureDetails:
        return cls(
            message=details.errorMessage,
            error_type=details.errorType,
            stack_trace=details.stackTrace.value if details.HasField("stackTrace") else None,
            inner_failure=cls.from_proto(details.innerFailure) if details.HasField("innerFailure") else None,
        )


class TaskFailedError(Exception):
    """Raised into the orchestrator when a task it awaited failed."""

    def __init__(self, message: str, details: pb.TaskFailureDetails | Exception):
        super().__init__(message)
        self._failure_details = details if isinstance(details, pb.TaskFailureDetails) else failure_details(details)
        self._details = FailureDetails.from_proto(self._failure_details)

    @property
    def details(self) -> FailureDetails:
        return self._details


class NonDeterminismError(Exception):
    """The orchestrator's code no longer produces the steps recorded in its history."""


class OrchestrationStateError(Exception):
    """The orchestration history handed to the worker is not usable."""


class Task(ABC, Generic[T]):
    """A durable step an orchestrator can yield; it completes with a result or a failure."""

    def __init__(self) -> None:
        self._is_complete = False
        self._result: Any = None
        self._exception: TaskFailedError | None = None
        self._parents: list[CompositeTask[Any]] = []

    @property
    def is_complete(self) -> bool:
        return self._is_complete

    @property
    def is_failed(self) -> bool:
        return self._exception is not None

    def get_result(self) -> T:
        if not self._is_complete:
            raise ValueError("The task has not completed.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def get_exception(self) -> TaskFailedError:
        if self._exception is None:
            raise ValueError("The task has not failed.")
        return self._exception

    def _finish(self, result: Any = None, exception: TaskFailedError | None = None) -> None:
        self._result, self._exception, self._is_complete = result, exception, True
        parents, self._parents = self._parents, []
        for parent in parents:
            parent._on_child_completed(self)


class CompletableTask(Task[T]):
    """A task completed from outside: by a history event the replay engine processes."""

    def __init__(self, expected_type: type | None = None) -> None:
        super().__init__()
        # What to build the JSON result into (a dataclass, say); None keeps plain JSON values.
        self.expected_type = expected_type

    def complete(self, result: T) -> None:
        if self._is_complete:
            raise ValueError("The task has already completed.")
        self._finish(result)

    def fail(self, message: str, details: pb.TaskFailureDetails | Exception) -> None:
        if self._is_complete:
            raise ValueError("The task has already completed.")
        self._finish(exception=TaskFailedError(message, details))


class RetryableTask(CompletableTask[T]):
    """An activity or sub-orchestration call that is re-scheduled after failures, per its policy."""

    def __init__(self, retry_policy: RetryPolicy, first_attempt_at: datetime,
                 expected_type: type | None = None) -> None:
        super().__init__(expected_type)
        self.retry_policy = retry_policy
        self.first_attempt_at = first_attempt_at
        self.attempt_count = 1

    def next_delay(self, now: datetime) -> timedelta | None:
        """How long to wait before the next attempt, or None when the policy is exhausted."""
        policy = self.retry_policy
        if self.attempt_count >= policy.max_number_of_attempts:
            return None
        if policy.retry_timeout is not None and now >= self.first_attempt_at + policy.retry_timeout:
            return None
        delay = policy.first_retry_interval.total_seconds() * (policy.backoff_coefficient or 1.0) ** (self.attempt_count - 1)
        if policy.max_retry_interval is not None:
            delay = min(delay, policy.max_retry_interval.total_seconds())
        return timedelta(seconds=delay)


class TimerTask(CompletableTask[None]):
    pass


class CompositeTask(Task[T]):
    """A task over other tasks (when_all / when_any)."""

    def __init__(self, tasks: Sequence[Task[Any]]):
        super().__init__()
        self._tasks = list(tasks)
        for child in self._tasks:
            if not isinstance(child, Task):
                raise TypeError(f"when_all/when_any take durable tasks, but got a {type(child).__name__}.")
        for child in self._tasks:
            if self._is_complete:
                break
            if child.is_complete:
                self._on_child_completed(child)
            else:
                child._parents.append(self)

    def get_tasks(self) -> list[Task[Any]]:
        return self._tasks

    @abstractmethod
    def _on_child_completed(self, child: Task[Any]) -> None:
        ...


class WhenAllTask(CompositeTask[list[T]]):
    """Completes when every child has; fails with the first failure, but only after all finish."""

    def __init__(self, tasks: Sequence[Task[T]]):
        # Counted rather than re-scanned on each completion: a fan-out of n children replays in O(n).
        self._completed_children = 0
        super().__init__(tasks)
        if not self._tasks:
            self._finish([])

    def _on_child_completed(self, child: Task[Any]) -> None:
        self._completed_children += 1
        if self._is_complete or self._completed_children < len(self._tasks):
            return
        first_failed = next((t for t in self._tasks if t.is_failed), None)
        if first_failed is not None:
            self._finish(exception=first_failed.get_exception())
        else:
            self._finish([t.get_result() for t in self._tasks])


class WhenAnyTask(CompositeTask[Task[T]]):
    """Completes with the first child task to complete (succeeded or failed)."""

    def _on_child_completed(self, child: Task[Any]) -> None:
        if not self._is_complete:
            self._finish(child)


def when_all(tasks: list[Task[T]]) -> WhenAllTask[T]:
    """A task whose result is the list of all results, in the order of `tasks`."""
    return WhenAllTask(tasks)


def when_any(tasks: Sequence[Task[T]]) -> WhenAnyTask[T]:
    """A task whose result is the first of `tasks` to complete; the others keep running."""
    return WhenAnyTask(tasks)


class ActivityContext:
    def __init__(self, orchestration_id: str, task_id: int):
        self._orchestration_id = orchestration_id
        self._task_id = task_id

    @property
    def orchestration_id(self) -> str:
        """The instance ID of the orchestration that scheduled this activity."""
        return self._orchestration_id

    @property
    def task_id(self) -> int:
        """The sequence number of this call within its orchestration."""
        return self._task_id


class RetryPolicy:
    """How often, and how far apart, a failed activity or sub-orchestration is attempted again."""

    def __init__(self, *,
                 first_retry_interval: timedelta,
                 max_number_of_attempts: int,
                 backoff_coefficient: float | None = 1.0,
                 max_retry_interval: timedelta | None = None,
                 retry_timeout: timedelta | None = None):
        if first_retry_interval < timedelta(0):
            raise ValueError("RetryPolicy: first_retry_interval must be >= 0.")
        if max_number_of_attempts < 1:
            raise ValueError("RetryPolicy: max_number_of_attempts must be >= 1.")
        if backoff_coefficient is not None and backoff_coefficient < 1:
            raise ValueError("RetryPolicy: backoff_coefficient must be >= 1.")
        if max_retry_interval is not None and max_retry_interval < timedelta(0):
            raise ValueError("RetryPolicy: max_retry_interval must be >= 0.")
        if retry_timeout is not None and retry_timeout < timedelta(0):
            raise ValueError("RetryPolicy: retry_timeout must be >= 0.")
        self._first_retry_interval = first_retry_interval
        self._max_number_of_attempts = max_number_of_attempts
        self._backoff_coefficient = backoff_coefficient
        self._max_retry_interval = max_retry_interval
        self._retry_timeout = retry_timeout

    @property
    def first_retry_interval(self) -> timedelta:
        return self._first_retry_interval

    @property
    def max_number_of_attempts(self) -> int:
        return self._max_number_of_attempts

    @property
    def backoff_coefficient(self) -> float | None:
        return self._backoff_coefficient

    @property
    def max_retry_interval(self) -> timedelta | None:
        return self._max_retry_interval

    @property
    def retry_timeout(self) -> timedelta | None:
        return self._retry_timeout


# Orchestrators are generator functions yielding tasks (or plain functions that return at once).
Orchestrator: TypeAlias = Callable[[OrchestrationContext, TInput], Generator[Task[Any], Any, TOutput] | TOutput]
Activity: TypeAlias = Callable[[ActivityContext, TInput], TOutput]


def get_name(fn: Callable[..., Any]) -> str:
    """The name a function is registered and called under."""
    name = getattr(fn, "__name__", None)
    if not name:
        raise TypeError(f"Cannot infer a name from {fn!r}; pass the registered name as a string.")
    if name == "<lambda>":
        raise ValueError("Cannot infer a name from a lambda function. Please provide a name explicitly.")
    return name
