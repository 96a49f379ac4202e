"""Loading the user's app: a module that lists its orchestrators and activities.

The convention: the module named by --app defines, at module level,

    orchestrators = [process_order, ...]   # required: at least one
    activities = [charge_card, ...]        # optional

Each entry is the function itself; it is registered under its own name, as `add_orchestrator`
and `add_activity` do.
"""

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from durabletask_worker.config import ConfigError


@dataclass(frozen=True)
class App:
    module: str
    orchestrators: list[Any]
    activities: list[Any]


def load_app(module_name: str) -> App:
    # A console script's sys.path starts with its own bin folder, not the working directory;
    # put the working directory first so that `--app orders.workflows` finds ./orders/workflows.py.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module is a configuration problem
        reason = str(error) if isinstance(error, ImportError) else f"{type(error).__name__}: {error}"
        raise ConfigError(f"The app module '{module_name}' (--app, DURABLETASK_APP) could not be imported "
                          f"({reason}).") from None
    orchestrators = _functions(module, "orchestrators")
    if not orchestrators:
        raise ConfigError(f"The app module '{module_name}' (--app, DURABLETASK_APP) lists no orchestrators: "
                          "define a module-level list `orchestrators = [...]` of orchestrator functions.")
    return App(module_name, orchestrators, _functions(module, "activities"))


def _functions(module: ModuleType, attribute: str) -> list[Any]:
    listed = getattr(module, attribute, [])
    if not isinstance(listed, (list, tuple)) or not all(callable(fn) for fn in listed):
        raise ConfigError(f"The app module '{module.__name__}' (--app, DURABLETASK_APP) has `{attribute}` "
                          "that is not a list of functions.")
    return list(listed)
