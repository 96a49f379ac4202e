"""examples/orders: each version takes its own sequence of steps; an order that is not shipped
in time is refunded."""

from durabletask import client
from durabletask.worker import VersioningOptions, VersionMatchStrategy
from examples import orders
from tests.support.sdk import new_id, running_worker

ORDER = {"items": 2, "amount": 19.5}


def test_v1_and_v2_orders_take_their_own_steps_and_timeouts_refund(shared_server):
    versioning = VersioningOptions("2.0", "2.0", VersionMatchStrategy.CURRENT_OR_OLDER)
    with running_worker(shared_server.address, orders.orchestrators, orders.activities, versioning), \
            client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
        v1 = hub.schedule_new_orchestration("process_order", input={**ORDER, "id": "a"},
                                            instance_id=new_id("v1"), version="1.0")
        v2 = hub.schedule_new_orchestration("process_order", input={**ORDER, "id": "b"},
                                            instance_id=new_id("v2"), version="2.0")
        late = hub.schedule_new_orchestration("process_order", input={**ORDER, "id": "c", "ship_within_seconds": 0.5},
                                              instance_id=new_id("late"), version="2.0")
        for instance_id in (v1, v2):
            hub.raise_orchestration_event(instance_id, "shipped", data="T-9")
        results = [hub.wait_for_orchestration_completion(i, timeout=15).get_output() for i in (v1, v2, late)]
    assert results[0] == {"order": "a", "version": "1.0", "status": "shipped", "tracking": "T-9",
                          "steps": ["reserved 2 item(s)", "charged 19.50"]}
    assert results[1]["steps"] == ["reserved 2 item(s)", "fraud check passed", "charged 19.50"]
    assert results[2] == {"order": "c", "version": "2.0", "status": "cancelled",
                          "steps": ["reserved 2 item(s)", "fraud check passed", "charged 19.50", "refunded 19.50"]}
