from django.apps import AppConfig
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
