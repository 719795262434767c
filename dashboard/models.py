"""What the dashboard remembers about a person: the time zone their pages are shown in."""

from django.conf import settings
from django.db import models


class Profile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_profile"
    )
    # An IANA zone name; blank until the first visit, when the page sends the browser's zone.
    time_zone = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.time_zone or 'no zone yet'})"
