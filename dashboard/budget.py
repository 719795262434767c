"""The budget page: set or remove a monthly budget, its alerts' webhook, a test event, and
the delivery log; and the budget card on the dashboard. The rules are in ``usage.budgets``."""

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.forms import BudgetForm
from dashboard.models import Profile
from usage import budgets, deliveries
from usage.costs import PriceBook
from usage.models import Budget, Delivery

DELIVERY_LOG_LENGTH = 50
DEFAULT_THRESHOLDS = ", ".join(str(t) for t in budgets.DEFAULT_THRESHOLDS)


def budget_card(subject: AbstractBaseUser, book: PriceBook | None = None) -> dict:
    """The dashboard card's numbers: those of ``GET /api/budget`` for the same user (at the
    prices of ``book``, the page's, when given)."""
    status = budgets.budget_status(subject, book=book)
    month = date.fromisoformat(status["month"]["start"]) if status["budget"] else None
    return {"budget_status": status, "budget_month": month}


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def budget(request: HttpRequest) -> HttpResponse:
    """The viewer's budget; a POST sets it."""
    current = budgets.budget_of(request.user)
    if request.method != "POST":
        return budget_page(request, current, BudgetForm(initial=initial_of(request, current)))
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return budget_page(request, current, form, status=400)
    budgets.save_budget(request.user, **form.cleaned_data)
    messages.success(request, "Budget saved.")
    return redirect("dashboard:budget")


def initial_of(request: HttpRequest, current: Budget | None) -> dict:
    if current is None:
        # The zone the dashboard is shown in, so that its months are the dashboard's months.
        zone = Profile.objects.filter(user=request.user).values_list("time_zone", flat=True)
        return {"time_zone": zone.first() or "UTC", "thresholds": DEFAULT_THRESHOLDS}
    return {
        "unit": current.unit,
        "limit": current.limit if current.unit == "images" else current.limit.normalize(),
        "thresholds": ", ".join(str(t) for t in current.threshold_list),
        "time_zone": current.time_zone,
        "webhook_url": current.webhook_url,
    }


def budget_page(
    request: HttpRequest, current: Budget | None, form: BudgetForm, status: int = 200
) -> HttpResponse:
    log = (
        Delivery.objects.filter(owner=request.user)
        .select_related("alert")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")[:DELIVERY_LOG_LENGTH]
    )
    context = {
        "form": form,
        "budget": current,
        **budget_card(request.user),
        "own": True,
        "deliveries": log,
    }
    return render(request, "dashboard/budget.html", context, status=status)


@login_required
@require_POST
def delete_budget(request: HttpRequest) -> HttpResponse:
    budgets.delete_budget(request.user)
    messages.success(request, "Budget removed: no more alerts.")
    return redirect("dashboard:budget")


@login_required
@require_POST
def test_event(request: HttpRequest) -> HttpResponse:
    """Queue a test event to the viewer's webhook; the worker sends it, as it sends alerts."""
    current = budgets.budget_of(request.user)
    if current is None or not current.webhook_url:
        messages.error(request, "Set a webhook URL first.")
        return redirect("dashboard:budget")
    with transaction.atomic():
        delivery = deliveries.test_event(current)
        transaction.on_commit(lambda: enqueue(delivery.pk))
    messages.success(request, f"Test event {delivery.event_id} queued: see the log below.")
    return redirect("dashboard:budget")


def enqueue(delivery_id: int) -> None:
    # Sooner than the next sweep, which would find the delivery due all the same.
    from usage.tasks import deliver

    deliver(delivery_id)
