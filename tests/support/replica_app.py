"""A `durabletask-worker` app for the multi-replica and fault tests: an activity, a durable timer,
another activity; the output (4 * input) shows that neither activity result was lost. Activity
runs are recorded in the test's ledger, if it has one."""

from datetime import timedelta

from tests.support.ledger import record_run


def double(ctx, n: int) -> int:
    record_run(ctx)
    return 2 * n


def double_twice(ctx, n: int):
    once = yield ctx.call_activity(double, input=n)
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=0.3))
    return (yield ctx.call_activity(double, input=once))


orchestrators = [double_twice]
activities = [double]
