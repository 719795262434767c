"""Admin for usage records, API tokens and model prices: browse, filter, export, revoke, set
prices. Never a secret.

Every change list, Django's users and groups too, is checked (``usage.admin_changelist``)."""

from allauth.account import admin as account_admin
from allauth.account.models import EmailAddress
from django import forms
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.functional import cached_property
from django.utils.html import format_html

from usage import costs
from usage.admin_changelist import CheckedChangeListAdmin
from usage.export import ADMIN_HEADER, admin_rows, csv_lines, csv_response
from usage.model_names import normal_model_name
from usage.models import (
    ApiToken,
    AuditEvent,
    ModelPrice,
    PluginGeneration,
    UncountedRecord,
    UsageRecord,
    UsageRollup,
)
from usage.rollups import delete_records
from usage.tokens import revoke_token

# Pages past this many rows are reached with filters instead of a full COUNT(*), which on
# a table of millions takes seconds.
COUNT_CAP = 100_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        return self.object_list[: COUNT_CAP + 1].count()


class ModelNameFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        # From the rollups, far fewer rows than the records to find the distinct names in,
        # and the few records not counted into them yet.
        counted = UsageRollup.objects.order_by("model").values_list("model", flat=True).distinct()
        uncounted = UsageRecord.objects.filter(
            pk__in=UncountedRecord.objects.values("record")
        ).values_list("model", flat=True)
        names = sorted(set(counted[:200]) | set(uncounted.distinct()[:200]))
        return [(name, name) for name in names[:200]]

    def has_output(self) -> bool:
        # The admin drops a filter without choices, and with it ?model=: the list would
        # show every record while the address says one model. The rollups can lag the
        # records, so they may name no model yet.
        return True

    def queryset(self, request, queryset):
        # Names are stored in their normal form: a fullwidth ?model=Flux finds Flux's records.
        return queryset.filter(model=normal_model_name(self.value())) if self.value() else queryset


@admin.register(UsageRecord)
class UsageRecordAdmin(CheckedChangeListAdmin):
    list_display = (
        "occurred_at",
        "owner_name",
        "model",
        "images",
        "event",
        "token_prefix",
        "received_at",
    )
    list_filter = (ModelNameFilter, "occurred_at")
    search_fields = ("owner__username", "owner__email", "model")
    date_hierarchy = "occurred_at"
    autocomplete_fields = ("owner",)
    raw_id_fields = ("token",)
    list_select_related = ("owner", "token")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = CappedCountPaginator
    list_per_page = 100
    actions = ("export_csv",)

    # Records are what desktop apps reported: admins read, export and delete, never edit.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    # Deleting goes through usage.rollups, so that the dashboards stop counting the records.
    def delete_model(self, request: HttpRequest, obj: UsageRecord) -> None:
        delete_records(UsageRecord.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        delete_records(queryset)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        # As the model filter: a name typed in another spelling finds the stored one.
        return super().get_search_results(request, queryset, normal_model_name(search_term))

    class Media:
        css = {"all": ["usage/admin-records.css"]}

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, record: UsageRecord) -> str:
        name = record.owner.get_username()
        return format_html('<span class="owner" title="{0}">{0}</span>', name)

    @admin.display(description="images", ordering="image_count")
    def images(self, record: UsageRecord) -> int:
        return record.image_count

    # Up to 100 characters each: cut to one line in the list, whole in the title.
    @admin.display(description="event id", ordering="event_id")
    def event(self, record: UsageRecord) -> str:
        return format_html('<span class="event-id" title="{0}">{0}</span>', record.event_id or "")

    @admin.display(description="token", ordering="token__prefix")
    def token_prefix(self, record: UsageRecord) -> str:
        token = record.token
        if token is None:
            return self.get_empty_value_display()
        return format_html(
            '<span class="token-prefix" title="{} ({})">{}</span>',
            token.display_prefix,
            token.name,
            token.display_prefix,
        )

    @admin.action(description="Export selected records as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        return csv_response("usage-records.csv", csv_lines(ADMIN_HEADER, admin_rows(queryset)))


@admin.register(ApiToken)
class ApiTokenAdmin(CheckedChangeListAdmin):
    fields = (
        "display_prefix",
        "name",
        "owner",
        "created_at",
        "last_used_at",
        "last_used_address",
        "revoked_at",
        "removed_at",
    )
    list_display = fields
    readonly_fields = tuple(name for name in fields if name != "name")  # only the name changes
    list_filter = ("created_at", "last_used_at", "revoked_at", "removed_at")
    search_fields = ("prefix", "name", "owner__username", "owner__email")
    autocomplete_fields = ("owner",)
    list_select_related = ("owner",)
    actions = ("revoke",)

    @admin.display(description="prefix")
    def display_prefix(self, token: ApiToken) -> str:
        return token.display_prefix

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token's secret can only be shown at creation; create tokens with the
        # create_api_token command or the dashboard, which show it once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Revoked, never deleted: deleting one would empty its records' token, while the
        # rollups go on counting their usage under it (usage.devices), so the per-device
        # figures would no longer match the records.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            revoke_token(token, actor=request.user, request=request)
        self.message_user(request, f"Revoked {len(tokens)} token(s).")


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = ("model", "price_per_image", "valid_from")

    def clean(self) -> dict:
        data = super().clean()
        if {"model", "price_per_image", "valid_from"} <= data.keys():
            # Stored as records store names, so that a fullwidth "Flux" prices Flux's records.
            data["model"] = costs.check_price(
                data["model"], data["price_per_image"], data["valid_from"]
            )
        return data


@admin.register(ModelPrice)
class ModelPriceAdmin(CheckedChangeListAdmin):
    """Prices per image: added, never edited, so that every past cost keeps its price. A
    wrong price is deleted (the admin's history says by whom) and the right one added."""

    form = ModelPriceForm
    list_display = ("model", "price", "valid_from", "created_by", "created_at")
    list_filter = ("model", "valid_from")
    search_fields = ("model",)
    date_hierarchy = "valid_from"
    list_select_related = ("created_by",)
    readonly_fields = ("created_by", "created_at")

    @admin.display(description="price per image", ordering="price_per_image")
    def price(self, price: ModelPrice) -> str:
        return f"{price.price_per_image.normalize():f} {costs.currency()}"

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ModelPrice, form, change: bool) -> None:
        obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_form(self, request: HttpRequest, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "price_per_image" in form.base_fields:
            form.base_fields[
                "price_per_image"
            ].help_text = f"In {costs.currency()}, the site's currency (the SITE_CURRENCY setting)."
            form.base_fields["valid_from"].help_text = (
                "In UTC, on a quarter hour (:00, :15, :30 or :45). The price holds from then "
                "until the model's next price; images before its first price have no price."
            )
        return form


class ReadOnlyAdmin(CheckedChangeListAdmin):
    """A record of what happened: listed and viewed, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PluginGeneration)
class PluginGenerationAdmin(ReadOnlyAdmin):
    """The ledger of plugin generations: read-only, with the totals of what is listed."""

    list_display = (
        "created_at",
        "user",
        "outcome",
        "upstream_status",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "duration_ms",
    )
    list_filter = ("outcome", "upstream_status", "created_at")
    search_fields = ("user__username",)
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # not a redirect or an error page
            response.context_data["ledger_totals"] = ledger_totals(changelist.queryset)
        return response


def ledger_totals(queryset: QuerySet) -> dict:
    """Generations and tokens of the filtered list; tokens the upstream did not report are 0."""
    return queryset.aggregate(
        generations=Count("id"),
        prompt_tokens=Sum("prompt_tokens", default=0),
        completion_tokens=Sum("completion_tokens", default=0),
        total_tokens=Sum("total_tokens", default=0),
    )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log, read-only: nobody edits or deletes what it says happened."""

    list_display = ("at", "action", "actor_name", "subject_name", "detail", "address")
    list_filter = ("action", "at")
    search_fields = ("actor_name", "subject_name", "detail", "address")
    date_hierarchy = "at"
    list_select_related = False


# Django's own admins of users and groups, and allauth's of email addresses, with the same
# checked change list as the rest.
admin.site.unregister(get_user_model())
admin.site.unregister(Group)
admin.site.unregister(EmailAddress)


@admin.register(get_user_model())
class UserAdmin(CheckedChangeListAdmin, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(CheckedChangeListAdmin, auth_admin.GroupAdmin):
    pass


@admin.register(EmailAddress)
class EmailAddressAdmin(CheckedChangeListAdmin, account_admin.EmailAddressAdmin):
    pass


from usage import budget_admin  # noqa: E402, F401 - budgets, alerts and deliveries
