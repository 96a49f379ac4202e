"""Durable Task SDK for Python, API- and wire-compatible with Microsoft's `durabletask`.

Import from the submodules: `durabletask.task`, `durabletask.client`, `durabletask.worker`.
The worker's configuration types are also importable from here, as in Microsoft's package;
they load on first use so that `import durabletask.server` does not pull in the SDK.
"""

from importlib import import_module
from typing import Any

PACKAGE_NAME = "durabletask"

_FROM_WORKER = ("ActivityWorkItemFilter", "ConcurrencyOptions", "EntityWorkItemFilter",
                "OrchestrationWorkItemFilter", "VersioningOptions", "WorkItemFilters")

__all__ = list(_FROM_WORKER)


def __getattr__(name: str) -> Any:
    if name in _FROM_WORKER:
        return getattr(import_module("durabletask.worker"), name)
    raise AttributeError(f"module 'durabletask' has no attribute {name!r}")
