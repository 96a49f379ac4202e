"""A `durabletask-worker` app for tests: an orchestrator whose activity sleeps as long as its input
says, then returns the id of the process that ran it; and one that sleeps inside its own episode
(orchestrators must not block; this one does, so that a test can catch a worker mid-episode)."""

import os
import time


def nap(ctx, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def napping(ctx, seconds: float):
    return (yield ctx.call_activity(nap, input=seconds))


def dozing(ctx, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


orchestrators = [napping, dozing]
activities = [nap]
