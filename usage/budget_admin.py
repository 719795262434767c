"""Admin for budgets (staff may set one for anyone), their alerts and the delivery log.

Registered by ``usage.admin``. The rules are the same as on the dashboard's budget page:
``usage.budgets`` and ``usage.webhooks`` check each field."""

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from usage import budgets
from usage.admin_changelist import CheckedChangeListAdmin
from usage.budget_fields import BudgetFieldChecks
from usage.models import Budget, BudgetAlert, Delivery, DeliveryAttempt
from usage.problems import InvalidQuery


class BudgetAdminForm(BudgetFieldChecks, forms.ModelForm):
    # Checked by usage.webhooks, which says more than URLField's "Enter a valid URL".
    webhook_url = forms.CharField(max_length=500, required=False)

    class Meta:
        model = Budget
        fields = (
            "owner",
            "unit",
            "image_limit",
            "money_limit",
            "thresholds",
            "time_zone",
            "webhook_url",
        )

    def clean(self) -> dict:
        data = super().clean()
        unit = data.get("unit")
        field = "image_limit" if unit == Budget.Unit.IMAGES else "money_limit"
        if unit and data.get(field) is None:
            self.add_error(field, f"A budget in {unit} needs this limit.")
        elif unit:
            try:
                data["limit"] = budgets.check_limit(unit, data[field])
            except InvalidQuery as error:
                self.add_error(field, error.message)
        return data

    def clean_thresholds(self) -> str:
        return ",".join(str(t) for t in super().clean_thresholds())


@admin.register(Budget)
class BudgetAdmin(CheckedChangeListAdmin):
    form = BudgetAdminForm
    list_display = (
        "owner",
        "unit",
        "limit",
        "thresholds",
        "time_zone",
        "webhook_url",
        "updated_at",
    )
    search_fields = ("owner__username", "owner__email")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)

    def save_model(self, request: HttpRequest, obj: Budget, form, change: bool) -> None:
        data = form.cleaned_data
        saved = budgets.save_budget(
            data["owner"],
            unit=data["unit"],
            limit=data["limit"],
            thresholds=budgets.parse_thresholds(data["thresholds"]),
            time_zone=data["time_zone"],
            webhook_url=data["webhook_url"],
        )
        obj.pk = saved.pk


class ReadOnly(CheckedChangeListAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnly):
    list_display = ("created_at", "owner", "month", "threshold", "unit", "used", "limit")
    list_filter = ("threshold",)
    search_fields = ("owner__username",)
    list_select_related = ("owner",)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "started_at", "finished_at", "outcome", "response_code", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = (
        "created_at",
        "owner",
        "event_type",
        "channel",
        "target",
        "status",
        "attempts",
        "next_attempt_at",
    )
    list_filter = ("status", "channel", "event_type")
    search_fields = ("owner__username", "target")
    list_select_related = ("owner",)
    readonly_fields = (
        "event_id",
        "event_type",
        "owner",
        "alert",
        "channel",
        "target",
        "payload",
        "status",
        "created_at",
        "attempts",
        "next_attempt_at",
        "leased_until",
        "finished_at",
    )
    inlines = [AttemptInline]
