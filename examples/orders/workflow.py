"""An order-processing workflow, in two versions.

  1.0  reserve stock -> charge the card -> wait for "shipped" (or refund when it takes too long)
  2.0  the same, with a fraud check before the card is charged

Every order keeps the version it was started with (the client's `default_version`), and replay
runs it down its own branch. So a version's branch must never change while its orders are in
flight: add a branch for the new version instead of editing the old one.
"""

from datetime import timedelta

from packaging.version import Version

from durabletask import task


# Activities do the real work (here: pretend to). They may run more than once: keep them idempotent.
def reserve_stock(ctx: task.ActivityContext, order: dict) -> str:
    return f"reserved {order['items']} item(s)"


def check_fraud(ctx: task.ActivityContext, order: dict) -> str:
    return "fraud check passed"


def charge_card(ctx: task.ActivityContext, order: dict) -> str:
    return f"charged {order['amount']:.2f}"


def refund_card(ctx: task.ActivityContext, order: dict) -> str:
    return f"refunded {order['amount']:.2f}"


def process_order(ctx: task.OrchestrationContext, order: dict):
    steps = [(yield ctx.call_activity(reserve_stock, input=order))]
    if Version(ctx.version or "1.0") >= Version("2.0"):  # new in 2.0: orders of 1.0 skip it, as they always did
        steps.append((yield ctx.call_activity(check_fraud, input=order)))
    steps.append((yield ctx.call_activity(charge_card, input=order)))

    # Long-running: wait for the warehouse to raise "shipped", or give up at the deadline. The
    # timer is durable: it fires even if every worker restarted in the meantime.
    shipped = ctx.wait_for_external_event("shipped")
    deadline = ctx.create_timer(timedelta(seconds=order.get("ship_within_seconds", 24 * 3600)))
    if (yield task.when_any([shipped, deadline])) is deadline:
        steps.append((yield ctx.call_activity(refund_card, input=order)))
        return {"order": order["id"], "version": ctx.version, "status": "cancelled", "steps": steps}
    return {"order": order["id"], "version": ctx.version, "status": "shipped", "steps": steps,
            "tracking": shipped.get_result()}
