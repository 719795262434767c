"""The dashboard's forms: a new API token, and the time zone pages are shown in."""

from django import forms

from usage.models import ApiToken
from usage.summary import QueryError, parse_zone

MAX_ACTIVE_TOKENS = 20


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        help_text="Where the token is used, for example “Studio laptop”.",
    )

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean(self):
        active = ApiToken.objects.filter(owner=self.owner, revoked_at__isnull=True).count()
        if active >= MAX_ACTIVE_TOKENS:
            raise forms.ValidationError(
                f"You have {active} active tokens, the most allowed. Revoke one you no longer "
                "use, then create the new one."
            )
        return self.cleaned_data


class TimeZoneForm(forms.Form):
    tz = forms.CharField(max_length=64, label="Time zone")

    def clean_tz(self) -> str:
        try:
            return parse_zone(self.cleaned_data["tz"].strip()).key
        except QueryError as error:
            raise forms.ValidationError(error.message) from error
