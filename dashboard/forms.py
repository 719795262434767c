"""The dashboard's forms: a new API token, and the time zone pages are shown in."""

from django import forms

from usage.models import ApiToken
from usage.problems import InvalidQuery
from usage.summary import parse_zone


class TokenForm(forms.Form):
    """A new token's name. The limits on creating tokens are ``usage.tokens.create_token``'s."""

    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        help_text="Where the token is used, for example “Studio laptop”.",
    )


class TimeZoneForm(forms.Form):
    tz = forms.CharField(max_length=64, label="Time zone")

    def clean_tz(self) -> str:
        try:
            return parse_zone(self.cleaned_data["tz"].strip()).key
        except InvalidQuery as error:
            raise forms.ValidationError(error.message) from error
