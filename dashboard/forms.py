"""The dashboard's forms: a new API token, and the time zone pages are shown in."""

from django import forms

from usage import budgets
from usage.budget_fields import BudgetFieldChecks
from usage.models import ApiToken, Budget
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


class BudgetForm(BudgetFieldChecks, forms.Form):
    """A monthly budget. The rules are ``usage.budgets``' and ``usage.webhooks``'."""

    unit = forms.ChoiceField(
        label="Budget in",
        choices=[("images", "images"), ("money", "money")],
        widget=forms.RadioSelect,
        initial="images",
    )
    limit = forms.DecimalField(
        label="Limit a month",
        min_value=0,
        max_digits=16,
        help_text="Images, or an amount in the site's currency.",
    )
    thresholds = forms.CharField(
        label="Alert at (% of the budget)",
        max_length=100,
        initial=", ".join(str(t) for t in budgets.DEFAULT_THRESHOLDS),
        help_text="Comma-separated percentages. One alert per threshold per month.",
    )
    time_zone = forms.CharField(label="Months start at midnight in", max_length=64)
    webhook_url = forms.CharField(
        label="Webhook URL (optional)",
        max_length=Budget._meta.get_field("webhook_url").max_length,
        required=False,
        help_text="Alerts are also POSTed here as signed JSON.",
    )

    def clean(self) -> dict:
        data = super().clean()
        if "unit" in data and "limit" in data:
            try:
                data["limit"] = budgets.check_limit(data["unit"], data["limit"])
            except InvalidQuery as error:
                self.add_error("limit", error.message)
        return data
