"""A `durabletask-worker` app for tests: one orchestrator whose activity sleeps as long as its
input says, then returns the id of the process that ran it."""

import os
import time


def nap(ctx, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def napping(ctx, seconds: float):
    return (yield ctx.call_activity(nap, input=seconds))


orchestrators = [napping]
activities = [nap]
