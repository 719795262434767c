"""The peer's records: the shape of the site's ``usage_usagerecord``, Django's defaults."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class UsageRecord(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    model = models.CharField(max_length=100)
    image_count = models.PositiveIntegerField()
    occurred_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(auto_now_add=True)
    event_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "event_id"], name="peer_record_owner_event")
        ]

    def __str__(self) -> str:
        return f"{self.model} x{self.image_count}"
