"""The shared cache without Redis: Django's database cache, with an ``incr`` that is atomic.

Every server process reads and writes the same table, so rate limits count across all of
them and a generation's "forget the cached token usage" reaches every process. Django's own
``incr`` reads the value and writes the sum back, so two processes counting at once can both
write the same count and a limit lets more through than it says.

Here integers are stored as protocol 0 pickles, ``I<digits>\\n.`` in base64, which
PostgreSQL can add to itself: ``incr`` is one ``UPDATE ... RETURNING``, atomic under the
row's lock, one round trip. Any other value (or another database) takes a compare-and-swap:
``UPDATE ... WHERE value = <the value read>``, read and tried again when another request
changed it first. (``add`` is atomic already: the key is the primary key, and the second of
two concurrent inserts fails.)

``migrate`` creates the table (usage.apps), as does the test runner.
"""

import base64
import pickle

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, router
from django.utils import timezone

# The stored text, decoded, of a protocol 0 pickle of an int: I42\n.
PICKLED_INT = r"'^I-?[0-9]+\n\.$'"


class DatabaseCache(DjangoDatabaseCache):
    def incr(self, key, delta: int = 1, version=None) -> int:
        key = self.make_and_validate_key(key, version=version)
        connection = connections[router.db_for_write(self.cache_model_class)]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(self._add_in_sql(connection), [delta, key, now])
                row = cursor.fetchone()
                if row is not None:
                    return self._decode(row[0])
            return self._compare_and_swap(connection, cursor, key, delta, now)

    # decr is incr(-delta) (BaseCache).

    def _base_set(self, mode, key, value, timeout=DEFAULT_TIMEOUT):
        if type(value) is not int:
            return super()._base_set(mode, key, value, timeout)
        # An int as a protocol 0 pickle, which incr adds to in SQL. Each thread has its own
        # instance of the backend (django.core.cache.caches), so no other call sees this.
        protocol, self.pickle_protocol = self.pickle_protocol, 0
        try:
            return super()._base_set(mode, key, value, timeout)
        finally:
            self.pickle_protocol = protocol

    def _add_in_sql(self, connection) -> str:
        quote = connection.ops.quote_name
        table, value, cache_key = quote(self._table), quote("value"), quote("cache_key")
        text = f"encode(decode({value}, 'base64'), 'escape')"
        total = f"substring({text} from '^I(-?[0-9]+)')::bigint + %s"
        return (
            f"UPDATE {table} SET {value} = "
            f"encode(convert_to('I' || ({total})::text || E'\\n.', 'UTF8'), 'base64') "
            f"WHERE {cache_key} = %s AND {quote('expires')} > %s AND {text} ~ {PICKLED_INT} "
            f"RETURNING {value}"
        )

    def _compare_and_swap(self, connection, cursor, key: str, delta: int, now) -> int:
        quote = connection.ops.quote_name
        table, value, cache_key = quote(self._table), quote("value"), quote("cache_key")
        read = f"SELECT {value} FROM {table} WHERE {cache_key} = %s AND {quote('expires')} > %s"
        swap = f"UPDATE {table} SET {value} = %s WHERE {cache_key} = %s AND {value} = %s"
        while True:
            cursor.execute(read, [key, now])
            row = cursor.fetchone()
            if row is None:  # missing or expired, as Django's own incr says it
                raise ValueError(f"Key '{key}' not found.")
            total = self._decode(row[0]) + delta
            cursor.execute(swap, [self._encode(total), key, row[0]])
            if cursor.rowcount == 1:
                return total

    def _decode(self, stored: str):
        return pickle.loads(base64.b64decode(stored.encode()))

    def _encode(self, value) -> str:
        # As _base_set writes a value, so that get() reads it back.
        protocol = 0 if type(value) is int else self.pickle_protocol
        return base64.b64encode(pickle.dumps(value, protocol)).decode("latin1")


def create_cache_tables(using: str = "default", **kwargs) -> None:
    """The database caches' tables, created if missing (``migrate`` calls it)."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)
