"""The signed-in pages: the dashboard, its refresh data, the time zone, tokens and CSV."""

import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from urllib.parse import urlencode
from zoneinfo import available_timezones

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from dashboard.budget import budget_card
from dashboard.devices import device_rows, token_choices
from dashboard.forms import TimeZoneForm, TokenForm
from dashboard.models import Profile
from dashboard.overview import (
    PRESET_DAYS,
    DashboardQuery,
    Overview,
    build_overview,
    parse_measure,
    parse_query,
)
from usage import audit
from usage.devices import parse_token
from usage.errors import problem_response, with_headers
from usage.export import (
    OWNER_HEADER,
    TOTALS_HEADER,
    csv_lines,
    csv_response,
    owner_rows,
    total_rows,
)
from usage.models import ApiToken
from usage.problems import InvalidQuery, Problem
from usage.records import kept_from_text
from usage.summary import DateRange
from usage.tokens import (
    NewToken,
    TokenStillActive,
    create_token,
    remove_token,
    rename_token,
    revoke_token,
)

# The parts of the page that Refresh Data replaces, each rendered from its own template.
REGIONS = ("cards", "budget", "usage-table", "share-table", "recent-records", "devices")
# What the token panel charts of the plugin generator's counts: its last days and months.
TOKEN_DAYS = 30
TOKEN_MONTHS = 12
PROMPT_MAX_LENGTH = 4000
# Where a new token's secret waits, in the session, for the page that shows it once; and
# for how long at most (a page never loaded does not keep it there).
NEW_TOKEN_KEY = "new_api_token"
NEW_TOKEN_SECONDS = 600


def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard:index" if request.user.is_authenticated else "account_login")


def subject_of(request: HttpRequest) -> AbstractBaseUser:
    """Whose data the page shows: the viewer's own, or, for staff, anyone's with ?user=."""
    username = request.GET.get("user", "")
    if not username or username == request.user.get_username():
        return request.user
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can view another user's dashboard.")
    if "\x00" in username:  # nobody's name; PostgreSQL refuses it even in a query
        raise Http404("No such user.")
    subject = get_object_or_404(get_user_model(), **{get_user_model().USERNAME_FIELD: username})
    audit.staff_viewed(request, subject)
    return subject


def saved_zone(user: AbstractBaseUser) -> str:
    """The viewer's stored zone, "" before the first visit. The signed-in user comes with
    the profile (``usage.auth.ThrottledModelBackend.get_user``): no query of its own."""
    try:
        return user.dashboard_profile.time_zone
    except Profile.DoesNotExist:
        return ""


def query_of(request: HttpRequest, zone: str | None = None) -> DashboardQuery:
    """The days and zone in the address; the viewer's stored zone (or UTC) when it has none."""
    return parse_query(request.GET, (saved_zone(request.user) if zone is None else zone) or "UTC")


@never_cache
@login_required
@require_safe
def index(request: HttpRequest) -> HttpResponse:
    subject = subject_of(request)
    zone = saved_zone(request.user)
    problem = None
    try:
        query = query_of(request, zone)
    except InvalidQuery as invalid:  # the page still shows something: the default range
        problem = f"{invalid.message} Showing the last 30 days instead."
        query = parse_query({}, zone or "UTC")
    try:
        token = token_of(request, subject)
    except InvalidQuery as invalid:  # and every device's usage
        problem = " ".join(filter(None, [problem, f"{invalid.message} Showing every device."]))
        token = None
    try:
        measure = measure_of(request)
    except InvalidQuery as invalid:  # and the images
        problem = " ".join(filter(None, [problem, f"{invalid.message} Showing images."]))
        measure = "images"
    overview = build_overview(subject, query.date_range, token, measure)
    context = {
        **page_context(request, subject, query, overview, token),
        "token_choices": token_choices(subject, token),
        **token_panels(subject, own=subject == request.user),
        "problem": problem,
        "detect_zone": not zone and not request.GET.get("tz"),
        "chart": overview.chart(),
        "range_links": range_links(request, query),
        "measure_links": measure_links(request, measure),
        "zone_form": TimeZoneForm(initial={"tz": query.date_range.tz.key}),
        "zone_options": zone_options(),
        "chartjs_url": settings.CHARTJS_URL,
        "chartjs_integrity": settings.CHARTJS_INTEGRITY,
    }
    return render(request, "dashboard/index.html", context, status=400 if problem else 200)


@never_cache
@login_required
@require_safe
def data(request: HttpRequest) -> JsonResponse:
    """The numbers and regions that Refresh Data puts in place, for the page's own query."""
    subject = subject_of(request)
    try:
        query = query_of(request)
        token = token_of(request, subject)
        measure = measure_of(request)
    except Problem as problem:
        return problem_response(problem)
    overview = build_overview(subject, query.date_range, token, measure)
    context = page_context(request, subject, query, overview, token)
    html = {region: render_to_string(f"dashboard/_{region}.html", context) for region in REGIONS}
    return JsonResponse(
        {"summary": overview.summary, "chart": overview.chart(), "html": html},
        headers={"Cache-Control": "no-store"},
    )


def token_of(request: HttpRequest, subject: AbstractBaseUser) -> int | None:
    """The device filter, ``?token=``: one of the subject's tokens, ``none``, or every one."""
    return parse_token(subject, request.GET.get("token"))


def measure_of(request: HttpRequest) -> str:
    """What the cards and charts count, ``?measure=``: images (the default) or cost."""
    return parse_measure(request.GET.get("measure"))


def page_context(
    request: HttpRequest,
    subject: AbstractBaseUser,
    query: DashboardQuery,
    overview: Overview,
    token: int | None = None,
) -> dict:
    own = subject == request.user
    params = query_params(query, None if own else subject.get_username())
    if token is not None:
        params["token"] = request.GET["token"]
    if overview.in_cost:
        params["measure"] = overview.measure
    return {
        "subject": subject,
        "own": own,
        "query": query,
        "tz": query.date_range.tz,
        "overview": overview,
        "summary": overview.summary,
        "query_string": urlencode(params),
        **budget_card(subject, overview.book),
        "devices": device_rows(overview.summary),
        "token": token,
    }


def token_panels(subject: AbstractBaseUser, *, own: bool) -> dict:
    """What the token and plugin panels need. Their numbers are fetched by the page after it
    has painted, so that the page never waits on the plugin generator."""
    url = reverse("usage:token-usage")
    if not own:  # staff may ask for anyone's; everyone else gets their own
        url += "?" + urlencode({"userId": subject.get_username()})
    return {
        "external_api_configured": bool(settings.EXTERNAL_API_URL),
        "token_usage_url": url,
        "plugin_generate_url": reverse("usage:plugin-generate"),
        "token_days": TOKEN_DAYS,
        "token_months": TOKEN_MONTHS,
        "prompt_max_length": PROMPT_MAX_LENGTH,
    }


def query_params(query: DashboardQuery, username: str | None) -> dict[str, str]:
    """The URL parameters that reproduce this view, for links, refresh and export."""
    date_range = query.date_range
    if query.days:
        params = {"days": str(query.days)}
    else:
        params = {"start": date_range.start.isoformat(), "end": date_range.end.isoformat()}
    params["tz"] = date_range.tz.key
    if username:
        params["user"] = username
    return params


def range_links(request: HttpRequest, query: DashboardQuery) -> list[dict]:
    kept = ("tz", "user", "token", "measure")
    base = {key: request.GET[key] for key in kept if request.GET.get(key)}
    return [
        {
            "label": f"{days} days",
            "url": "?" + urlencode({"days": days, **base}),
            "current": query.days == days,
        }
        for days in PRESET_DAYS
    ]


def measure_links(request: HttpRequest, measure: str) -> list[dict]:
    """Images or cost, for the same view otherwise (range, zone, user, device)."""
    links = []
    for value, label in (("images", "Images"), ("cost", "Cost")):
        params = request.GET.copy()
        params.pop("measure", None)
        if value != "images":
            params["measure"] = value
        links.append({"label": label, "url": f"?{params.urlencode()}", "current": value == measure})
    return links


@lru_cache(maxsize=1)
def zone_options() -> str:
    """The ~600 ``<option>``s of the zone field, rendered once per process, not per page."""
    names = sorted(available_timezones() - {"localtime", "Factory"})
    return format_html_join("", '<option value="{}">', ((name,) for name in names))


@login_required
@require_POST
def set_time_zone(request: HttpRequest) -> HttpResponse:
    """Store the viewer's zone: sent by the page on a first visit, or chosen in its form."""
    form = TimeZoneForm(request.POST)
    wants_json = "application/json" in request.headers.get("Accept", "")
    if not form.is_valid():
        message = form.errors["tz"][0]
        if wants_json:
            return problem_response(InvalidQuery("tz", message))
        messages.error(request, message)
        return redirect(safe_next(request))
    zone = form.cleaned_data["tz"]
    Profile.objects.update_or_create(user=request.user, defaults={"time_zone": zone})
    if wants_json:
        return JsonResponse({"tz": zone})
    return redirect(with_zone(safe_next(request), zone))


def safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if allowed and target.startswith("/") else reverse("dashboard:index")


def with_zone(url: str, zone: str) -> str:
    path, _, query = url.partition("?")
    params = QueryDict(query, mutable=True)
    params["tz"] = zone
    return f"{path}?{params.urlencode()}"


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """The viewer's tokens; a POST creates one."""
    return create_token_page(request) if request.method == "POST" else tokens_page(request)


def create_token_page(request: HttpRequest) -> HttpResponse:
    """Create a token, then redirect to the list, which shows its secret this once.

    Post/redirect/get: reloading the page that shows the secret reloads a GET, and never
    posts the form again (a second token). The secret waits in the session for that one
    GET (``take_new_token``), never in an address.
    """
    form = TokenForm(request.POST)
    if not form.is_valid():
        return tokens_page(request, form, status=400)
    try:
        new = create_token(
            request.user, form.cleaned_data["name"], actor=request.user, request=request
        )
    except Problem as problem:  # the limits: too many active, or created too fast
        form.add_error(None, problem.message)
        return with_headers(tokens_page(request, form, status=problem.status), problem)
    request.session[NEW_TOKEN_KEY] = {"id": new.token.pk, "raw": new.raw, "at": time.time()}
    return see_other("dashboard:tokens")


def take_new_token(request: HttpRequest) -> NewToken | None:
    """The token just created, for the one page that shows its secret; gone after that."""
    kept = request.session.pop(NEW_TOKEN_KEY, None)
    if not isinstance(kept, dict) or time.time() - kept.get("at", 0) > NEW_TOKEN_SECONDS:
        return None
    token = listed_tokens(request.user).filter(pk=kept.get("id"), revoked_at__isnull=True).first()
    return NewToken(token=token, raw=kept["raw"]) if token else None


def listed_tokens(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The viewer's tokens on their list: removed ones are kept, but no longer shown."""
    return ApiToken.objects.filter(owner=user, removed_at__isnull=True)


def tokens_page(
    request: HttpRequest,
    form: TokenForm | None = None,
    *,
    problem: str = "",
    status: int = 200,
) -> HttpResponse:
    new_token = take_new_token(request) if request.method == "GET" else None
    context = {
        "form": form or TokenForm(),
        "new_token": new_token,
        "problem": problem,
        "tokens": listed_tokens(request.user).order_by("-created_at", "-id"),
        "zone": saved_zone(request.user) or "UTC",
        "api_url": request.build_absolute_uri(reverse("usage:model-usage")),
    }
    return render(request, "dashboard/tokens.html", context, status=status)


def see_other(view_name: str) -> HttpResponse:
    """A redirect after a POST that a reload never repeats."""
    response = redirect(view_name)
    response.status_code = 303
    return response


def own_token(request: HttpRequest, token_id: int) -> ApiToken:
    """One of the viewer's listed tokens. Another user's token is a 404: its existence is
    not shown, and nothing changes."""
    return get_object_or_404(listed_tokens(request.user), pk=token_id)


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Confirm, then revoke."""
    token = own_token(request, token_id)
    if request.method == "POST":
        return revoke_token_now(request, token)
    return render(request, "dashboard/revoke.html", {"token": token})


def revoke_token_now(request: HttpRequest, token: ApiToken) -> HttpResponse:
    revoke_token(token, actor=request.user, request=request)
    messages.success(request, f"Revoked “{token.name}” ({token.display_prefix}…).")
    return see_other("dashboard:tokens")


@never_cache
@login_required
@require_POST
def rename(request: HttpRequest, token_id: int) -> HttpResponse:
    """A new name for one of the viewer's tokens, by the rules of a new token's name."""
    token = own_token(request, token_id)
    form = TokenForm(request.POST)
    if not form.is_valid():
        message = f"“{token.name}” was not renamed: {form.errors['name'][0]}"
        return tokens_page(request, problem=message, status=400)
    old_name = token.name
    rename_token(token, form.cleaned_data["name"], actor=request.user, request=request)
    messages.success(request, f"Renamed “{old_name}” to “{token.name}”.")
    return see_other("dashboard:tokens")


@never_cache
@login_required
@require_POST
def remove(request: HttpRequest, token_id: int) -> HttpResponse:
    """Take a revoked token off the viewer's list (the audit log keeps its history)."""
    token = own_token(request, token_id)
    try:
        remove_token(token, actor=request.user, request=request)
    except TokenStillActive as problem:
        return tokens_page(request, problem=problem.message, status=problem.status)
    messages.success(request, f"Removed “{token.name}” ({token.display_prefix}…) from the list.")
    return see_other("dashboard:tokens")


@never_cache
@login_required
@require_safe
def export_csv(request: HttpRequest) -> HttpResponse:
    """Every record in the range, one row each; a ``Records-Kept-From`` header says since
    when raw records are kept, once retention has dropped older ones."""
    response = _export(
        request,
        "usage",
        lambda subject, date_range, token: csv_lines(
            OWNER_HEADER, owner_rows(subject, *date_range.utc_bounds(), date_range.tz, token)
        ),
    )
    if kept_from := kept_from_text():
        response["Records-Kept-From"] = kept_from
    return response


@never_cache
@login_required
@require_safe
def export_totals_csv(request: HttpRequest) -> HttpResponse:
    """Images and generations per day and model, from the rollups: small at any volume."""
    return _export(
        request,
        "daily-totals",
        lambda subject, date_range, token: csv_lines(
            TOTALS_HEADER, total_rows(subject, date_range, token)
        ),
    )


def _export(
    request: HttpRequest,
    kind: str,
    lines: Callable[[AbstractBaseUser, DateRange, int | None], Iterator[str]],
) -> HttpResponse:
    subject = subject_of(request)
    try:
        query = query_of(request)
        token = token_of(request, subject)
    except Problem as problem:  # a CSV download that cannot be made says why, as text
        return HttpResponse(
            problem.message, status=problem.status, content_type="text/plain; charset=utf-8"
        )
    date_range = query.date_range
    filename = f"{kind}-{subject.get_username()}-{date_range.start}-to-{date_range.end}.csv"
    return csv_response(filename, lines(subject, date_range, token))
