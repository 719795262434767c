"""A persistent connection the database closed while it was idle is dropped before the next
request uses it, without a round trip (usage_site/db_connections.py)."""

import time

import psycopg
import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite has no server to close a connection"
)


def terminate(pid: int) -> None:
    """End that server process from another session, as a database restart would."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_request_after_the_server_closed_the_connection_gets_a_new_one():
    client = Client()
    assert client.get("/api/health").json()["database"] == "ok"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    terminate(pid)
    time.sleep(0.2)  # the server's goodbye reaches the socket

    health = client.get("/api/health")
    assert health.status_code == 200, health.content
    assert health.json()["database"] == "ok"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


@pytest.mark.django_db(transaction=True)
def test_a_live_idle_connection_is_kept():
    client = Client()
    client.get("/api/health")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    client.get("/api/health")

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid
