"""The orders example app, exposed to `durabletask-worker --app examples.orders` by the runner's
convention: module-level lists of the orchestrators and activities to register."""

from examples.orders.workflow import charge_card, check_fraud, process_order, refund_card, reserve_stock

orchestrators = [process_order]
activities = [reserve_stock, check_fraud, charge_card, refund_card]
