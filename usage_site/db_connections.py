"""Persistent database connections that the server closed while they were idle.

Django's ``CONN_HEALTH_CHECKS`` asks PostgreSQL ``SELECT 1`` before each request that
reuses a connection: a round trip on every request, which on the single-record post cost
as much as storing the record. This checks without asking: a connection with nothing in
flight should have nothing to read, so if its socket is readable, the server has closed it
(a restart, a crash, ``pg_terminate_backend``) or is about to, and it is closed here, before
the request uses it. Django opens a new one at the first query. A connection cut without a
word (a network partition) still fails one request with a 503, as before.
"""

import select

from django.db import connections


def close_connections_the_server_closed(**kwargs) -> None:
    """A ``request_started`` receiver: close each idle PostgreSQL connection whose socket has
    something to read (at least the end of the stream)."""
    for connection in connections.all(initialized_only=True):
        if connection.vendor != "postgresql" or connection.connection is None:
            continue
        if connection.in_atomic_block:  # not idle: a test's transaction, say
            continue
        try:
            readable, _, _ = select.select([connection.connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # no socket any more
            readable = True
        if readable:
            connection.close()
