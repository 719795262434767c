"""The shared cache without Redis: Django's database cache, with an ``incr`` that is atomic.

Every server process reads and writes the same table, so rate limits count across all of
them and a generation's "forget the cached token usage" reaches every process. Django's own
``incr`` reads the value and writes the sum back, so two processes counting at once can both
write the same count and a limit lets more through than it says. Here the write is a
compare-and-swap: ``UPDATE ... WHERE value = <the value read>``, read and tried again when
another request changed it first. (``add`` is atomic already: the key is the primary key,
and the second of two concurrent inserts fails.)

``migrate`` creates the table (usage.apps), as does the test runner.
"""

import base64
import pickle

from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, router
from django.utils import timezone


class DatabaseCache(DjangoDatabaseCache):
    def incr(self, key, delta: int = 1, version=None) -> int:
        key = self.make_and_validate_key(key, version=version)
        connection = connections[router.db_for_write(self.cache_model_class)]
        quote = connection.ops.quote_name
        table, value, cache_key = quote(self._table), quote("value"), quote("cache_key")
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        read = f"SELECT {value} FROM {table} WHERE {cache_key} = %s AND {quote('expires')} > %s"
        swap = f"UPDATE {table} SET {value} = %s WHERE {cache_key} = %s AND {value} = %s"
        with connection.cursor() as cursor:
            while True:
                cursor.execute(read, [key, now])
                row = cursor.fetchone()
                if row is None:  # missing or expired, as Django's own incr says it
                    raise ValueError(f"Key '{key}' not found.")
                total = self._decode(row[0]) + delta
                cursor.execute(swap, [self._encode(total), key, row[0]])
                if cursor.rowcount == 1:
                    return total

    # decr is incr(-delta) (BaseCache).

    def _decode(self, stored: str):
        return pickle.loads(base64.b64decode(stored.encode()))

    def _encode(self, value) -> str:
        # As DatabaseCache._base_set writes a value, so that get() reads it back.
        return base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")


def create_cache_tables(using: str = "default", **kwargs) -> None:
    """The database caches' tables, created if missing (``migrate`` calls it)."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)
