"""The background worker's tasks (huey; ``manage.py run_huey``, started by ``./dev.py run``
and ``./dev.py serve``).

Every minute each worker process schedules sweeps ``BUDGET_SWEEP_SECONDS`` apart (huey's
periodic tasks fire once a minute at most, and an alert must go out within one). A sweep
checks every budget (``usage.alerts``) and hands each due delivery to a task of its own
(``usage.deliveries``). Sweeps and sends are safe to run twice or at once: the alert's
unique constraint and the delivery's lease decide, so any number of workers may run.
"""

from django.conf import settings
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from usage import alerts, deliveries


@db_periodic_task(crontab())
def schedule_sweeps() -> None:
    for offset in range(0, 60, settings.BUDGET_SWEEP_SECONDS):
        sweep.schedule(delay=offset)


@db_task()
def sweep() -> None:
    now = timezone.now()
    alerts.check_budgets(now)
    for delivery_id in deliveries.due(now):
        deliver(delivery_id)


@db_task()
def deliver(delivery_id: int) -> None:
    deliveries.send(delivery_id)
