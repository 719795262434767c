"""The checks a budget's fields get in every form that sets one: the dashboard's budget page
and the admin's. Each field is parsed by the module whose rule it is (``usage.budgets``,
``usage.summary``, ``usage.webhooks``), and its ``InvalidQuery`` becomes the field's error."""

from django import forms

from usage import budgets, webhooks
from usage.problems import InvalidQuery
from usage.summary import parse_zone


def checked(parse, value):
    """``parse(value)``, its ``InvalidQuery`` as the field's error."""
    try:
        return parse(value)
    except InvalidQuery as error:
        raise forms.ValidationError(error.message) from error


class BudgetFieldChecks:
    """A form mixin: ``thresholds``, ``time_zone`` and ``webhook_url`` checked as the rules
    say; ``clean_thresholds`` gives the percentages as a list of numbers."""

    cleaned_data: dict

    def clean_thresholds(self) -> list[int]:
        return checked(budgets.parse_thresholds, self.cleaned_data["thresholds"])

    def clean_time_zone(self) -> str:
        return checked(parse_zone, self.cleaned_data["time_zone"].strip()).key

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"].strip()
        if url:
            checked(webhooks.check_url, url)
        return url
