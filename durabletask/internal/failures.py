"""Turning Python exceptions into wire failure details, named the way every Durable Task SDK names them."""

import traceback

from google.protobuf import wrappers_pb2

from durabletask.internal import orchestrator_service_pb2 as pb

# Exception chains can be cyclic or absurdly deep; this many levels is plenty to diagnose.
_MAX_INNER_FAILURES = 10


def qualified_name(exception_type: type) -> str:
    """`module.QualName`, e.g. `builtins.ValueError`, as .NET and Java SDKs name their types."""
    return f"{exception_type.__module__}.{exception_type.__qualname__}"


def failure_details(error: BaseException, *, _depth: int = 0) -> pb.TaskFailureDetails:
    details = pb.TaskFailureDetails(
        errorType=qualified_name(type(error)),
        errorMessage=str(error),
        stackTrace=wrappers_pb2.StringValue(value="".join(traceback.format_tb(error.__traceback__))),
    )
    cause = error.__cause__ or error.__context__
    if isinstance(cause, Exception) and cause is not error and _depth < _MAX_INNER_FAILURES:
        details.innerFailure.CopyFrom(failure_details(cause, _depth=_depth + 1))
    return details


def has_failure(details: pb.TaskFailureDetails) -> bool:
    return bool(details.errorType or details.errorMessage)
