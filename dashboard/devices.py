"""The dashboard's per-device parts: the choices of its token filter and the rows of its
breakdown table (``templates/dashboard/_devices.html``). The figures are the summary's
``byToken`` (``usage.devices``), the same as the API's."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q

from usage.devices import NO_TOKEN_NAME, NO_TOKEN_PARAM
from usage.models import NO_TOKEN, ApiToken, DailyUsageRollup


@dataclass(frozen=True)
class Choice:
    value: str  # the ``token`` parameter
    label: str
    selected: bool


def token_choices(subject: AbstractBaseUser, token: int | None) -> list[Choice]:
    """Every token the filter can pick: the subject's active tokens, the revoked ones that
    sent records (a revoked token with no usage would only ever show nothing), and the
    records sent without a token."""
    # From the daily rollups (the owner's rows, a few per day), not the raw records: a scan
    # of those for a token took seconds at ten million records.
    used = Exists(DailyUsageRollup.objects.filter(owner=subject, token_id=OuterRef("pk")))
    tokens = (
        ApiToken.objects.filter(owner=subject)
        .filter(Q(revoked_at__isnull=True) | used)
        .order_by("name", "id")
    )
    choices = [Choice("", "All devices", token is None)]
    for item in tokens:
        label = f"{item.name} ({item.display_prefix}…)"
        if item.is_revoked:
            label += ", revoked"
        choices.append(Choice(str(item.pk), label, token == item.pk))
    choices.append(Choice(NO_TOKEN_PARAM, NO_TOKEN_NAME, token == NO_TOKEN))
    return choices


def device_rows(summary: dict) -> list[dict]:
    """The summary's ``byToken``, each with its share of the images as a percentage, as
    the model share table shows it."""
    total = summary["totals"]["images"] or 1
    return [
        {**entry, "percent": f"{100 * entry['images'] / total:.1f}"} for entry in summary["byToken"]
    ]
