from django.apps import AppConfig
from django.core.signals import request_started
from django.db.models.signals import post_migrate


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from usage_site.database_cache import create_cache_tables

        # The shared cache's table (settings.CACHES without REDIS_URL on PostgreSQL), so that
        # `migrate` is the one step a new database needs, whoever runs it.
        post_migrate.connect(create_cache_tables, sender=self, dispatch_uid="cache-tables")
        # Persistent connections the database closed while they were idle are dropped
        # before a request uses them, without a round trip (usage_site/db_connections.py).
        from usage_site.db_connections import close_connections_the_server_closed

        request_started.connect(
            close_connections_the_server_closed, dispatch_uid="close-connections-server-closed"
        )
