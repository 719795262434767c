"""Two requests racing with the same event ids store each record once (PostgreSQL)."""

import threading

import pytest
from django.db import connection

from tests.conftest import bearer, post_usage
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises writers, so the race this guards against cannot happen there",
)
def test_the_same_batch_sent_at_once_from_many_threads_is_stored_once(owner, owner_token):
    batch = [{"model": "SD", "count": 1, "id": f"evt-{n}"} for n in range(200)]
    start = threading.Barrier(6)
    results = []

    def send():
        client = bearer(owner_token)
        start.wait()
        try:
            results.append(post_usage(client, batch).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert UsageRecord.objects.count() == 200
    assert sum(r["accepted"] for r in results) == 200
    assert sum(r["duplicates"] for r in results) == 5 * 200
