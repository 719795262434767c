"""The access matrix: every URL of the project, asked by each persona, with its expected answer.

The routes are read from the URL configuration (``project_routes``), so that a URL added
without an entry in ``TABLE`` fails ``test_every_route_has_an_entry_and_every_entry_a_route``.

Personas: ``anonymous``; ``owner`` (alice), whose data each URL points at (her record, token,
profile, user id, ``?user=alice``); ``other`` (bob), a second ordinary user; ``staff`` (carol,
staff and superuser). Where the API takes a bearer token, each signed-in persona asks both
with that token and with a signed-in session. Sessions' POSTs carry the CSRF token that the
site put in a form for that session, as a browser's would; ``test_a_post_without_csrf_token``
sends none.
"""

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.admin.sites import AdminSite
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db.models import Model
from django.http import HttpResponse
from django.test import Client
from django.test.client import ClientHandler
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone
from django.views.generic import RedirectView

from dashboard.models import Profile
from scripts.standin_upstream import StandIn
from tests.conftest import create_other, create_owner, create_staff, make_record
from usage.models import (
    ApiToken,
    AuditEvent,
    Budget,
    BudgetAlert,
    Delivery,
    ModelPrice,
    PluginGeneration,
    UsageRecord,
)
from usage.tokens import NewToken, create_token

PERSONAS = ("anonymous", "owner", "other", "staff")
PASSWORDS = {"owner": "alice-password-1", "other": "bob-password-1", "staff": "carol-password-1"}
NEW_PASSWORD = "Matrix-new-pass-83"
# Found on a page only if that page shows the owner's record.
OWNER_MODEL = "Owner-Only-Model-Q7"
OWNER_GROUP = "alice-team"
OWNER_ADDRESS = "alice.owner@example.com"
PROMPT = "A plugin that counts the words of a page"
OWNER_HOOK = "https://owner-only-hook.example.com/q7"
OWNER_LIMIT = 4321
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# --- The world each case runs in -------------------------------------------------------------


@dataclass
class World:
    users: dict[str, Model]  # by persona, anonymous excepted
    tokens: dict[str, NewToken]
    record: UsageRecord
    generation: PluginGeneration
    event: AuditEvent
    group: Group
    address: EmailAddress
    budget: Budget
    alert: BudgetAlert
    delivery: Delivery
    price: ModelPrice
    upstream: StandIn | None = None

    @property
    def owner(self):
        return self.users["owner"]

    @property
    def owner_token(self) -> ApiToken:
        return self.tokens["owner"].token


@dataclass(frozen=True)
class Made:
    """The world as made once for the module: primary keys, and the tokens' raw values."""

    users: dict[str, int]
    tokens: dict[str, tuple[int, str]]
    record: int
    generation: int
    event: int
    group: int
    address: int
    budget: tuple[int, int, int]  # the owner's budget, its alert and the alert's delivery
    price: int


@pytest.fixture(scope="module")
def made(module_rows) -> Made:
    # Made once: the 430-odd cases each start from it, and what one changes is undone.
    with module_rows():
        users = {"owner": create_owner(), "other": create_other(), "staff": create_staff()}
        owner = users["owner"]
        tokens = {
            persona: create_token(user, f"{persona}'s laptop") for persona, user in users.items()
        }
        Profile.objects.create(user=owner, time_zone="Europe/Paris")
        generation = PluginGeneration.objects.create(
            user=owner, outcome="ok", upstream_status=200, total_tokens=128, duration_ms=40
        )
        event = AuditEvent.objects.create(
            action=AuditEvent.Action.TOKEN_REVOKED,
            actor=owner,
            actor_name=owner.username,
            subject=owner,
            subject_name=owner.username,
            detail=tokens["owner"].token.display_prefix,
        )
        return Made(
            users={persona: user.pk for persona, user in users.items()},
            tokens={persona: (new.token.pk, new.raw) for persona, new in tokens.items()},
            record=make_record(owner, timezone.now() - timedelta(hours=1), OWNER_MODEL, 3).pk,
            generation=generation.pk,
            event=event.pk,
            group=Group.objects.create(name=OWNER_GROUP).pk,
            address=EmailAddress.objects.create(
                user=owner, email=OWNER_ADDRESS, verified=True, primary=True
            ).pk,
            budget=make_budget(owner),
            # Prices are the site's, not a user's: named by the owner's model to be found.
            price=ModelPrice.objects.create(
                model=OWNER_MODEL,
                price_per_image=Decimal("0.5"),
                valid_from=datetime(2026, 1, 1, tzinfo=UTC),
            ).pk,
        )


def make_budget(owner) -> tuple[int, int, int]:
    # Stored as is: its webhook's host is never resolved, and no worker sends anything.
    budget = Budget.objects.create(
        owner=owner,
        image_limit=OWNER_LIMIT,
        webhook_url=OWNER_HOOK,
        webhook_secret="whsec_matrix",
    )
    alert = BudgetAlert.objects.create(
        owner=owner, month=date(2026, 12, 1), threshold=50, unit="images", used=5, limit=10
    )
    delivery = Delivery.objects.create(
        event_id=uuid.uuid4(),
        event_type="budget.threshold_crossed",
        owner=owner,
        alert=alert,
        channel="webhook",
        target=OWNER_HOOK,
        payload={},
    )
    return budget.pk, alert.pk, delivery.pk


@pytest.fixture
def world(made, db) -> World:
    """The module's world, read afresh for each case."""
    cache.clear()  # no throttle counts from another test
    users = get_user_model().objects.in_bulk(made.users.values())
    tokens = ApiToken.objects.in_bulk([pk for pk, _ in made.tokens.values()])
    return World(
        users={persona: users[pk] for persona, pk in made.users.items()},
        tokens={persona: NewToken(tokens[pk], raw) for persona, (pk, raw) in made.tokens.items()},
        record=UsageRecord.objects.get(pk=made.record),
        generation=PluginGeneration.objects.get(pk=made.generation),
        event=AuditEvent.objects.get(pk=made.event),
        group=Group.objects.get(pk=made.group),
        address=EmailAddress.objects.get(pk=made.address),
        budget=Budget.objects.get(pk=made.budget[0]),
        alert=BudgetAlert.objects.get(pk=made.budget[1]),
        delivery=Delivery.objects.get(pk=made.budget[2]),
        price=ModelPrice.objects.get(pk=made.price),
    )


# --- What a route is asked and what each persona gets ------------------------------------------

Check = Callable[[World, str, bool, Client], None]


@dataclass(frozen=True)
class Expect:
    status: int
    to: str | Callable[[World], str] | None = None  # a redirect's target path
    next: bool = False  # the redirect carries ?next= with the URL asked for
    owner_data: bool | None = None  # the owner's data is (True) or is not (False) in the body
    # Whether the request did what it asks (checked by the action's ``check``). By default a
    # success that is not a redirect to a sign-in page.
    done: bool | None = None

    def __post_init__(self) -> None:
        if 300 <= self.status < 400 and self.to is None:
            raise ValueError("a redirect's expectation says where it goes")

    @property
    def did_it(self) -> bool:
        if self.done is not None:
            return self.done
        return self.status < 400 and self.to not in ("/accounts/login/", "/admin/login/")


@dataclass(frozen=True)
class Action:
    """A method of a route: by persona, or by "persona/via" where the two vias differ."""

    expect: dict[str, Expect]
    data: Callable[[World, str], dict] | None = None
    json: bool = False  # send ``data`` as a JSON body (with the CSRF token as a header)
    check: Check | None = None

    def expect_for(self, persona: str, via: str) -> Expect:
        return self.expect.get(f"{persona}/{via}", self.expect[persona])


@dataclass(frozen=True)
class Route:
    url: Callable[[World], str]
    get: Action | None = None
    post: Action | None = None
    vias: tuple[str, ...] = ("session",)
    marker: Callable[[World], str] | None = None  # the owner's data, as the page would show it
    upstream: bool = False  # the external API stand-in runs, knowing the owner's usage
    sign_in: bool = False  # POST: a signed-out client submits the persona's own credentials
    api: bool = False  # answers JSON, errors included


def by(anonymous: Expect, owner: Expect, other: Expect, staff: Expect, **vias: Expect) -> dict:
    """Expectations by persona; ``owner_session=...`` overrides one persona's via."""
    expect = {"anonymous": anonymous, "owner": owner, "other": other, "staff": staff}
    return expect | {key.replace("_", "/"): value for key, value in vias.items()}


SIGN_IN = Expect(302, to="/accounts/login/", next=True)
ADMIN_SIGN_IN = Expect(302, to="/admin/login/", next=True)
TO_DASHBOARD = Expect(302, to="/dashboard/")
TO_TOKENS = Expect(303, to="/dashboard/tokens/")
OK = Expect(200)
MINE = Expect(200, owner_data=True)  # the owner's data is on it
NOT_MINE = Expect(200, owner_data=False)  # the asker's own answer, without the owner's data
UNAUTHORIZED = Expect(401)
FORBIDDEN = Expect(403)
NOT_FOUND = Expect(404)


def admin_only(staff: Expect) -> dict:
    return by(ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, staff)


def everyone(expect: Expect) -> dict:
    return by(expect, expect, expect, expect)


def signed_in(anonymous: Expect, expect: Expect) -> dict:
    return by(anonymous, expect, expect, expect)


# --- Checks of what a POST changed -------------------------------------------------------------


def session_user(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def signs_in(w: World, persona: str, done: bool, client: Client) -> None:
    user = w.users.get(persona)
    assert session_user(client) == (str(user.pk) if done else None)


def signs_out(w: World, persona: str, done: bool, client: Client) -> None:
    still = persona != "anonymous" and not done
    assert session_user(client) == (str(w.users[persona].pk) if still else None)


def adds_own_address(w: World, persona: str, done: bool, client: Client) -> None:
    added = EmailAddress.objects.filter(email="matrix@example.com").values_list("user__username")
    assert [name for (name,) in added] == ([w.users[persona].username] if done else [])
    w.address.refresh_from_db()
    assert (w.address.user, w.address.verified, w.address.primary) == (w.owner, True, True)


def changes_no_password(w: World, persona: str, done: bool, client: Client) -> None:
    for who, user in w.users.items():
        user.refresh_from_db()
        assert user.check_password(PASSWORDS[who]), who


def changes_own_password(w: World, persona: str, done: bool, client: Client) -> None:
    for who, user in w.users.items():
        user.refresh_from_db()
        assert user.check_password(NEW_PASSWORD) is (done and who == persona), who


def changes_owner_password(w: World, persona: str, done: bool, client: Client) -> None:
    w.owner.refresh_from_db()
    assert w.owner.check_password(NEW_PASSWORD) is done
    assert w.owner.check_password(PASSWORDS["owner"]) is not done


def sets_own_zone(w: World, persona: str, done: bool, client: Client) -> None:
    zones = dict(Profile.objects.values_list("user__username", "time_zone"))
    expected = {"alice": "Europe/Paris"}
    if done:
        expected[w.users[persona].username] = "Asia/Tokyo"
    assert zones == expected


def creates_own_token(w: World, persona: str, done: bool, client: Client) -> None:
    made = ApiToken.objects.filter(name="Made by the matrix").values_list("owner__username")
    assert [name for (name,) in made] == ([w.users[persona].username] if done else [])


def revokes_owner_token(w: World, persona: str, done: bool, client: Client) -> None:
    w.owner_token.refresh_from_db()
    assert w.owner_token.is_revoked is done


def renames_owner_token(w: World, persona: str, done: bool, client: Client) -> None:
    w.owner_token.refresh_from_db()
    assert (w.owner_token.name == "Renamed by the matrix") is done


def removes_owner_token(w: World, persona: str, done: bool, client: Client) -> None:
    w.owner_token.refresh_from_db()
    assert (w.owner_token.removed_at is not None) is done


def stores_own_record(w: World, persona: str, done: bool, client: Client) -> None:
    posted = UsageRecord.objects.filter(model="Posted-By-The-Matrix").values_list("owner__username")
    assert [name for (name,) in posted] == ([w.users[persona].username] if done else [])


def asks_upstream_for_owner(w: World, persona: str, done: bool, client: Client) -> None:
    asked = [request.path for request in w.upstream.received_for("token-usage")]
    assert asked == (["/user/alice/token-usage"] if done else [])


def generates_for_asker(w: World, persona: str, done: bool, client: Client) -> None:
    asked = [request.json()["userId"] for request in w.upstream.received_for("generate")]
    assert asked == ([w.users[persona].username] if done else [])
    ledger = PluginGeneration.objects.exclude(pk=w.generation.pk).values_list("user__username")
    assert [name for (name,) in ledger] == asked


def sets_own_budget(w: World, persona: str, done: bool, client: Client) -> None:
    limits = dict(Budget.objects.values_list("owner__username", "image_limit"))
    expected = {"alice": OWNER_LIMIT}
    if done:
        expected[w.users[persona].username] = 321
    assert limits == expected


def deletes_own_budget(w: World, persona: str, done: bool, client: Client) -> None:
    assert Budget.objects.filter(owner=w.owner).exists() is not (done and persona == "owner")


def queues_own_test_event(w: World, persona: str, done: bool, client: Client) -> None:
    tests = Delivery.objects.filter(event_type="webhook.test").values_list("owner__username")
    assert [name for (name,) in tests] == (["alice"] if done and persona == "owner" else [])


def deletes(obj: Callable[[World], Model]) -> Check:
    def check(w: World, persona: str, done: bool, client: Client) -> None:
        target = obj(w)
        assert type(target).objects.filter(pk=target.pk).exists() is not done

    return check


def field_becomes(obj: Callable[[World], Model], name: str, value: str) -> Check:
    def check(w: World, persona: str, done: bool, client: Client) -> None:
        target = obj(w)
        target.refresh_from_db()
        assert (getattr(target, name) == value) is done

    return check


def creates(model_class: type[Model], **lookup) -> Check:
    def check(w: World, persona: str, done: bool, client: Client) -> None:
        assert model_class.objects.filter(**lookup).exists() is done

    return check


# --- The table ---------------------------------------------------------------------------------


def of_owner(name: str) -> Callable[[World], str]:
    """A dashboard page that points at the owner's data."""
    return lambda w: f"{reverse(name)}?{urlencode({'user': w.owner.username})}"


def show_record(w: World) -> str:
    return OWNER_MODEL


def show_owner(w: World) -> str:
    return w.owner.username


def show_owner_token(w: World) -> str:
    return w.owner_token.display_prefix


@dataclass(frozen=True)
class Form:
    data: Callable[[World], dict]
    check: Check


@dataclass(frozen=True)
class AdminModel:
    """One model in the admin, and what staff may do with the owner's object there."""

    label: str  # "usage_usagerecord"
    obj: Callable[[World], Model]
    marker: Callable[[World], str]
    # The add and change forms' data, and the check of what they would do; sent even where
    # they are refused, to see that they did nothing.
    add: "Form"
    change: "Form"
    can_add: bool = True
    added_to: Callable[[World], str] | None = None  # where a successful add goes
    can_change: bool = True  # else read-only: the page shows, the POST is refused
    # "allowed"; "refused" (no delete permission); "protected" (it would delete related rows
    # that staff may not delete: the page says so, the POST is refused).
    delete: str = "allowed"
    changelist_action: str = "delete_selected"
    action_check: Check | None = None
    history_shows_owner: bool = True

    def url(self, view: str, with_obj: bool = True) -> Callable[[World], str]:
        name = f"admin:{self.label}_{view}"
        return lambda w: reverse(name, args=[self.obj(w).pk] if with_obj else [])

    def routes(self) -> dict[str, Route]:
        app, model = self.label.split("_", 1)
        changelist = f"/admin/{app}/{model}/"
        mine = Expect(200, owner_data=True)
        refused = Expect(403, done=False)
        # Django sends staff who may not change the model to the admin's index after a delete.
        deleted = Expect(302, to=changelist if self.can_change else "/admin/")
        by_delete = {
            "allowed": (mine, deleted),
            "refused": (refused, refused),
            "protected": (mine, refused),
        }
        delete_page, delete_post = by_delete[self.delete]
        if self.changelist_action != "delete_selected":
            action = Expect(302, to=changelist)
        else:
            action = {
                "allowed": Expect(302, to=changelist),
                # The action is not offered, so the list is shown again, unchanged.
                "refused": Expect(200, owner_data=True, done=False),
                "protected": refused,
            }[self.delete]
        return {
            f"admin:{self.label}_changelist": Route(
                self.url("changelist", with_obj=False),
                get=Action(admin_only(mine)),
                post=Action(
                    admin_only(action),
                    data=lambda w, p: {
                        "action": self.changelist_action,
                        "_selected_action": [self.obj(w).pk],
                        "post": "yes",
                    },
                    check=self.action_check or deletes(self.obj),
                ),
                marker=self.marker,
            ),
            f"admin:{self.label}_add": Route(
                self.url("add", with_obj=False),
                get=Action(admin_only(OK if self.can_add else refused)),
                post=Action(
                    admin_only(
                        Expect(302, to=self.added_to or changelist) if self.can_add else refused
                    ),
                    data=lambda w, p: self.add.data(w),
                    check=self.add.check,
                ),
            ),
            f"admin:{self.label}_change": Route(
                self.url("change"),
                get=Action(admin_only(mine)),
                post=Action(
                    admin_only(Expect(302, to=changelist) if self.can_change else refused),
                    data=lambda w, p: self.change.data(w),
                    check=self.change.check,
                ),
                marker=self.marker,
            ),
            f"admin:{self.label}_delete": Route(
                self.url("delete"),
                get=Action(admin_only(delete_page)),
                post=Action(
                    admin_only(delete_post),
                    data=lambda w, p: {"post": "yes"},
                    check=deletes(self.obj),
                ),
                marker=self.marker,
            ),
            f"admin:{self.label}_history": Route(
                self.url("history"),
                get=Action(admin_only(mine if self.history_shows_owner else OK)),
                marker=self.marker,
            ),
            # Django's admin adds this one without a name: /<id>/ goes to /<id>/change/.
            f"admin:[admin/{app}/{model}/<path:object_id>/]": Route(
                lambda w: f"/admin/{app}/{model}/{self.obj(w).pk}/",
                get=Action(admin_only(Expect(302, to=self.url("change")))),
            ),
        }


def user_change_page(w: World) -> str:
    return reverse("admin:auth_user_change", args=[w.owner.pk])


def new_user_page(w: World) -> str:
    return reverse(
        "admin:auth_user_change", args=[get_user_model().objects.get(username="dave").pk]
    )


ADMIN_MODELS = (
    AdminModel(
        "auth_group",
        obj=lambda w: w.group,
        marker=lambda w: OWNER_GROUP,
        add=Form(lambda w: {"name": "matrix-group"}, creates(Group, name="matrix-group")),
        change=Form(
            lambda w: {"name": "alice-team-renamed"},
            field_becomes(lambda w: w.group, "name", "alice-team-renamed"),
        ),
    ),
    AdminModel(
        "auth_user",
        obj=lambda w: w.owner,
        marker=show_owner,
        add=Form(
            lambda w: {
                "username": "dave",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
                "usable_password": "true",
            },
            creates(get_user_model(), username="dave"),
        ),
        added_to=new_user_page,
        change=Form(
            lambda w: {
                "username": "alice",
                "email": "alice-renamed@example.com",
                "is_active": "on",
                "date_joined_0": "2026-01-02",
                "date_joined_1": "03:04:05",
            },
            field_becomes(lambda w: w.owner, "email", "alice-renamed@example.com"),
        ),
        # Her plugin generations would go with her, and the ledger is not for deleting.
        delete="protected",
    ),
    # Records are what the apps reported: staff read, export and delete, never edit.
    AdminModel(
        "usage_usagerecord",
        obj=lambda w: w.record,
        marker=show_record,
        add=Form(
            lambda w: {
                "owner": w.owner.pk,
                "model": "Added-By-Staff",
                "image_count": "1",
                "occurred_at_0": "2026-01-02",
                "occurred_at_1": "03:04:05",
                "received_at_0": "2026-01-02",
                "received_at_1": "03:04:05",
            },
            creates(UsageRecord, model="Added-By-Staff"),
        ),
        can_add=False,
        change=Form(
            lambda w: {"model": "Edited-By-Staff", "image_count": "9"},
            field_becomes(lambda w: w.record, "model", "Edited-By-Staff"),
        ),
        can_change=False,
    ),
    # A token's secret is shown once, at creation, which the admin cannot do.
    AdminModel(
        "usage_apitoken",
        obj=lambda w: w.owner_token,
        marker=show_owner_token,
        add=Form(
            lambda w: {"name": "Added by staff", "owner": w.owner.pk},
            creates(ApiToken, name="Added by staff"),
        ),
        can_add=False,
        change=Form(
            lambda w: {"name": "Renamed by staff"},
            field_becomes(lambda w: w.owner_token, "name", "Renamed by staff"),
        ),
        changelist_action="revoke",
        action_check=revokes_owner_token,
        # Revoked, never deleted: the rollups count usage per token (usage.devices).
        delete="refused",
    ),
    # The ledger and the audit log are read-only.
    AdminModel(
        "usage_plugingeneration",
        obj=lambda w: w.generation,
        marker=show_owner,
        add=Form(
            lambda w: {"user": w.owner.pk, "outcome": "ok", "duration_ms": "7"},
            creates(PluginGeneration, duration_ms=7),
        ),
        can_add=False,
        change=Form(
            lambda w: {"total_tokens": "1", "outcome": "ok", "duration_ms": "40"},
            field_becomes(lambda w: w.generation, "total_tokens", 1),
        ),
        can_change=False,
        delete="refused",
        history_shows_owner=False,  # its history names the generation, not its user
    ),
    # allauth's email addresses, in its admin with the site's checked change list.
    AdminModel(
        "account_emailaddress",
        obj=lambda w: w.address,
        marker=lambda w: OWNER_ADDRESS,
        add=Form(
            lambda w: {"user": w.owner.pk, "email": "added@example.com"},
            creates(EmailAddress, email="added@example.com"),
        ),
        change=Form(
            lambda w: {"user": w.owner.pk, "email": "changed@example.com", "verified": "on"},
            field_becomes(lambda w: w.address, "email", "changed@example.com"),
        ),
        changelist_action="make_verified",
        action_check=lambda w, p, done, client: None,
    ),
    # Staff set anyone's budget; alerts and deliveries are a log, read and deleted only.
    AdminModel(
        "usage_budget",
        obj=lambda w: w.budget,
        marker=show_owner,
        add=Form(
            lambda w: {
                "owner": w.users["other"].pk,
                "unit": "images",
                "image_limit": "55",
                "thresholds": "50",
                "time_zone": "UTC",
                "webhook_url": "",
            },
            creates(Budget, image_limit=55),
        ),
        change=Form(
            lambda w: {
                "owner": w.owner.pk,
                "unit": "images",
                "image_limit": "77",
                "thresholds": "50, 80",
                "time_zone": "UTC",
                "webhook_url": "",
            },
            field_becomes(lambda w: w.budget, "image_limit", 77),
        ),
    ),
    AdminModel(
        "usage_budgetalert",
        obj=lambda w: w.alert,
        marker=show_owner,
        add=Form(lambda w: {"threshold": "5"}, creates(BudgetAlert, threshold=5)),
        can_add=False,
        change=Form(
            lambda w: {"threshold": "60"}, field_becomes(lambda w: w.alert, "threshold", 60)
        ),
        can_change=False,
    ),
    AdminModel(
        "usage_delivery",
        obj=lambda w: w.delivery,
        marker=lambda w: OWNER_HOOK,
        add=Form(lambda w: {"target": "x"}, creates(Delivery, target="x")),
        can_add=False,
        change=Form(
            lambda w: {"status": "failed"}, field_becomes(lambda w: w.delivery, "status", "failed")
        ),
        can_change=False,
    ),
    AdminModel(
        "usage_auditevent",
        obj=lambda w: w.event,
        marker=show_owner,
        add=Form(
            lambda w: {"action": "token_created", "actor_name": "x", "subject_name": "forged"},
            creates(AuditEvent, subject_name="forged"),
        ),
        can_add=False,
        change=Form(
            lambda w: {"detail": "edited by staff"},
            field_becomes(lambda w: w.event, "detail", "edited by staff"),
        ),
        can_change=False,
        delete="refused",
    ),
    # Prices are added and deleted, never edited, so that past costs keep theirs.
    AdminModel(
        "usage_modelprice",
        obj=lambda w: w.price,
        marker=show_record,
        add=Form(
            lambda w: {
                "model": "Priced-By-Staff",
                "price_per_image": "1",
                "valid_from_0": "2026-01-02",
                "valid_from_1": "03:15:00",
            },
            creates(ModelPrice, model="Priced-By-Staff"),
        ),
        change=Form(
            lambda w: {"price_per_image": "9"},
            field_becomes(lambda w: w.price, "price_per_image", Decimal(9)),
        ),
        can_change=False,
    ),
)


def credentials(w: World, persona: str) -> dict:
    """The persona's own username and password; anonymous guesses the owner's, wrongly."""
    if persona == "anonymous":
        return {"username": w.owner.username, "password": "not-her-password"}
    return {"username": w.users[persona].username, "password": PASSWORDS[persona]}


TABLE: dict[str, Route] = {
    "home": Route(
        lambda w: "/",
        get=Action(signed_in(Expect(302, to="/accounts/login/"), TO_DASHBOARD)),
    ),
    "account_login": Route(
        lambda w: reverse("account_login"),
        get=Action(signed_in(OK, TO_DASHBOARD)),
        post=Action(
            by(Expect(200, done=False), TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
            data=credentials,
            check=signs_in,
        ),
        sign_in=True,
    ),
    "account_logout": Route(
        lambda w: reverse("account_logout"),
        # A page asking to confirm; a signed-out visitor is sent to sign in.
        get=Action(signed_in(Expect(302, to="/accounts/login/"), OK)),
        post=Action(
            by(
                Expect(302, to="/accounts/login/"),
                *[Expect(302, to="/accounts/login/", done=True)] * 3,
            ),
            data=lambda w, p: {},
            check=signs_out,
        ),
    ),
    # Self-service accounts (allauth): sign-up is closed by default (SIGNUP_OPEN).
    "account_signup": Route(
        lambda w: reverse("account_signup"),
        get=Action(signed_in(FORBIDDEN, TO_DASHBOARD)),
        post=Action(
            signed_in(FORBIDDEN, Expect(302, to="/dashboard/", done=False)),
            data=lambda w, p: {
                "username": "matrix",
                "email": "matrix@example.com",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
            check=creates(get_user_model(), username="matrix"),
        ),
    ),
    "account_inactive": Route(lambda w: reverse("account_inactive"), get=Action(everyone(OK))),
    # Each signed-in user sees and adds only their own addresses.
    "account_email": Route(
        lambda w: reverse("account_email"),
        get=Action(signed_in(SIGN_IN, NOT_MINE) | {"owner": MINE}),
        post=Action(
            signed_in(SIGN_IN, Expect(302, to="/accounts/email/")),
            data=lambda w, p: {"action_add": "", "email": "matrix@example.com"},
            check=adds_own_address,
        ),
        marker=lambda w: OWNER_ADDRESS,
    ),
    "account_email_verification_sent": Route(
        lambda w: reverse("account_email_verification_sent"), get=Action(everyone(OK))
    ),
    # A key that is not one: the page says the link is not valid, and nothing is confirmed.
    "account_confirm_email": Route(
        lambda w: reverse("account_confirm_email", args=["not-a-key"]),
        get=Action(everyone(OK)),
        post=Action(
            everyone(Expect(404, done=False)),
            data=lambda w, p: {},
            check=lambda w, p, done, client: None,
        ),
    ),
    # Asking for a reset link only sends mail; it changes no one's password.
    "account_reset_password": Route(
        lambda w: reverse("account_reset_password"),
        get=Action(everyone(OK)),
        post=Action(
            everyone(Expect(302, to="/accounts/password/reset/done/")),
            data=lambda w, p: {"email": OWNER_ADDRESS},
            check=changes_no_password,
        ),
    ),
    "account_reset_password_done": Route(
        lambda w: reverse("account_reset_password_done"), get=Action(everyone(OK))
    ),
    "account_reset_password_from_key": Route(
        lambda w: reverse("account_reset_password_from_key", args=["1", "not-a-key"]),
        get=Action(everyone(OK)),
        post=Action(
            everyone(Expect(200, done=False)),
            data=lambda w, p: {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
            check=changes_no_password,
        ),
    ),
    "account_reset_password_from_key_done": Route(
        lambda w: reverse("account_reset_password_from_key_done"), get=Action(everyone(OK))
    ),
    "password_change": Route(
        lambda w: reverse("password_change"),
        get=Action(signed_in(SIGN_IN, OK)),
        post=Action(
            signed_in(SIGN_IN, Expect(302, to="/accounts/password/done/")),
            data=lambda w, p: {
                "old_password": PASSWORDS.get(p, ""),
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
            check=changes_own_password,
        ),
    ),
    "password_change_done": Route(
        lambda w: reverse("password_change_done"),
        get=Action(signed_in(SIGN_IN, OK)),
    ),
    # The dashboard: anyone's own; another user's only for staff.
    "dashboard:index": Route(
        of_owner("dashboard:index"),
        get=Action(by(SIGN_IN, MINE, FORBIDDEN, MINE)),
        marker=show_record,
    ),
    "dashboard:data": Route(
        of_owner("dashboard:data"),
        get=Action(by(SIGN_IN, MINE, FORBIDDEN, MINE)),
        marker=show_record,
    ),
    "dashboard:export": Route(
        of_owner("dashboard:export"),
        get=Action(by(SIGN_IN, MINE, FORBIDDEN, MINE)),
        marker=show_record,
    ),
    "dashboard:export-totals": Route(
        of_owner("dashboard:export-totals"),
        get=Action(by(SIGN_IN, MINE, FORBIDDEN, MINE)),
        marker=show_record,
    ),
    "dashboard:timezone": Route(
        lambda w: reverse("dashboard:timezone"),
        post=Action(
            signed_in(SIGN_IN, TO_DASHBOARD),
            data=lambda w, p: {"tz": "Asia/Tokyo", "next": "/dashboard/"},
            check=sets_own_zone,
        ),
    ),
    # Tokens: everyone sees and makes only their own, staff included.
    "dashboard:tokens": Route(
        lambda w: reverse("dashboard:tokens"),
        get=Action(by(SIGN_IN, MINE, NOT_MINE, NOT_MINE)),
        post=Action(
            by(SIGN_IN, *[TO_TOKENS] * 3),
            data=lambda w, p: {"name": "Made by the matrix"},
            check=creates_own_token,
        ),
        marker=show_owner_token,
    ),
    "dashboard:revoke": Route(
        lambda w: reverse("dashboard:revoke", args=[w.owner_token.pk]),
        get=Action(by(SIGN_IN, MINE, NOT_FOUND, NOT_FOUND)),
        post=Action(
            by(SIGN_IN, TO_TOKENS, NOT_FOUND, NOT_FOUND),
            data=lambda w, p: {},
            check=revokes_owner_token,
        ),
        marker=show_owner_token,
    ),
    "dashboard:rename": Route(
        lambda w: reverse("dashboard:rename", args=[w.owner_token.pk]),
        get=Action(by(SIGN_IN, *[Expect(405)] * 3)),
        post=Action(
            by(SIGN_IN, TO_TOKENS, NOT_FOUND, NOT_FOUND),
            data=lambda w, p: {"name": "Renamed by the matrix"},
            check=renames_owner_token,
        ),
    ),
    # Only a revoked token can be removed from the list: the owner's is live (409).
    "dashboard:remove": Route(
        lambda w: reverse("dashboard:remove", args=[w.owner_token.pk]),
        get=Action(by(SIGN_IN, *[Expect(405)] * 3)),
        post=Action(
            by(SIGN_IN, Expect(409), NOT_FOUND, NOT_FOUND),
            data=lambda w, p: {},
            check=removes_owner_token,
        ),
    ),
    # Budgets: everyone sees and sets only their own, staff included (staff use the admin).
    "dashboard:budget": Route(
        lambda w: reverse("dashboard:budget"),
        get=Action(by(SIGN_IN, MINE, NOT_MINE, NOT_MINE)),
        post=Action(
            signed_in(SIGN_IN, Expect(302, to="/dashboard/budget/")),
            data=lambda w, p: {
                "unit": "images",
                "limit": "321",
                "thresholds": "50",
                "time_zone": "UTC",
                "webhook_url": "",
            },
            check=sets_own_budget,
        ),
        marker=lambda w: OWNER_HOOK,
    ),
    "dashboard:budget-delete": Route(
        lambda w: reverse("dashboard:budget-delete"),
        post=Action(
            signed_in(SIGN_IN, Expect(302, to="/dashboard/budget/")),
            data=lambda w, p: {},
            check=deletes_own_budget,
        ),
    ),
    "dashboard:budget-test-event": Route(
        lambda w: reverse("dashboard:budget-test-event"),
        post=Action(
            signed_in(SIGN_IN, Expect(302, to="/dashboard/budget/")),
            data=lambda w, p: {},
            check=queues_own_test_event,
        ),
    ),
    # The admin: staff only; everyone else is sent to its sign-in page.
    "admin:index": Route(lambda w: reverse("admin:index"), get=Action(admin_only(OK))),
    "admin:login": Route(
        lambda w: reverse("admin:login"),
        # A signed-in user who is not staff is shown the form, saying they may not enter.
        get=Action(by(OK, OK, OK, Expect(302, to="/admin/"))),
        post=Action(
            by(*[Expect(200, done=False)] * 3, Expect(302, to="/admin/")),
            # The admin's form sends where to go next in a hidden field.
            data=lambda w, p: {**credentials(w, p), "next": "/admin/"},
            check=signs_in,
        ),
        sign_in=True,
    ),
    "admin:logout": Route(
        lambda w: reverse("admin:logout"),
        post=Action(
            by(
                *[Expect(302, to="/admin/", done=False)] * 3,
                Expect(302, to="/accounts/login/", done=True),
            ),
            data=lambda w, p: {},
            check=signs_out,
        ),
    ),
    "admin:password_change": Route(
        lambda w: reverse("admin:password_change"),
        get=Action(admin_only(OK)),
        post=Action(
            admin_only(Expect(302, to="/admin/password_change/done/")),
            data=lambda w, p: {
                "old_password": PASSWORDS.get(p, ""),
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
            check=changes_own_password,
        ),
    ),
    "admin:password_change_done": Route(
        lambda w: reverse("admin:password_change_done"), get=Action(admin_only(OK))
    ),
    "admin:autocomplete": Route(
        lambda w: (
            reverse("admin:autocomplete")
            + "?"
            + urlencode(
                {
                    "app_label": "usage",
                    "model_name": "apitoken",
                    "field_name": "owner",
                    "term": "ali",
                }
            )
        ),
        get=Action(admin_only(MINE)),
        marker=show_owner,
    ),
    "admin:jsi18n": Route(lambda w: reverse("admin:jsi18n"), get=Action(admin_only(OK))),
    # Users have no page on the site, so the admin has nowhere to send staff.
    "admin:view_on_site": Route(
        lambda w: reverse(
            "admin:view_on_site",
            args=[ContentType.objects.get_for_model(w.owner).pk, w.owner.pk],
        ),
        get=Action(admin_only(NOT_FOUND)),
    ),
    "admin:app_list": Route(
        lambda w: reverse("admin:app_list", args=["usage"]), get=Action(admin_only(OK))
    ),
    "admin:auth_user_password_change": Route(
        lambda w: reverse("admin:auth_user_password_change", args=[w.owner.pk]),
        get=Action(admin_only(MINE)),
        post=Action(
            admin_only(Expect(302, to=user_change_page)),
            data=lambda w, p: {
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
                "usable_password": "true",
            },
            check=changes_owner_password,
        ),
        marker=show_owner,
    ),
    # Django's admin catches every other URL under /admin/, unnamed, after signing in.
    "admin:[admin/(?P<url>.*)$]": Route(
        lambda w: "/admin/no-such-page/", get=Action(admin_only(NOT_FOUND))
    ),
    **{key: route for model in ADMIN_MODELS for key, route in model.routes().items()},
    # The API's schema and its docs are public.
    "schema": Route(lambda w: reverse("schema"), get=Action(everyone(OK))),
    "api-docs": Route(lambda w: reverse("api-docs"), get=Action(everyone(OK))),
    # The API: each caller's own records, whoever they are, staff included.
    "usage:model-usage": Route(
        lambda w: "/api/model-usage",
        get=Action(by(UNAUTHORIZED, MINE, NOT_MINE, NOT_MINE)),
        post=Action(
            # Only an API token posts records; a session does not.
            by(
                UNAUTHORIZED,
                *[Expect(201)] * 3,
                owner_session=UNAUTHORIZED,
                other_session=UNAUTHORIZED,
                staff_session=UNAUTHORIZED,
            ),
            data=lambda w, p: {"modelName": "Posted-By-The-Matrix", "imageCount": 2},
            json=True,
            check=stores_own_record,
        ),
        vias=("bearer", "session"),
        marker=show_record,
        api=True,
    ),
    "usage:summary": Route(
        lambda w: "/api/model-usage/summary",
        get=Action(by(UNAUTHORIZED, MINE, NOT_MINE, NOT_MINE)),
        vias=("bearer", "session"),
        marker=show_record,
        api=True,
    ),
    "usage:budget": Route(
        lambda w: "/api/budget",
        get=Action(by(UNAUTHORIZED, MINE, NOT_MINE, NOT_MINE)),
        vias=("bearer", "session"),
        marker=lambda w: f'"limit":{OWNER_LIMIT}',
        api=True,
    ),
    "usage:health": Route(lambda w: "/api/health", get=Action(everyone(OK)), api=True),
    "usage:health-simple": Route(
        lambda w: "/api/health/simple", get=Action(everyone(OK)), api=True
    ),
    # The external API: anyone's token usage only for staff; generations for the caller.
    "usage:token-usage": Route(
        lambda w: f"/api/user/token-usage?{urlencode({'userId': w.owner.username})}",
        get=Action(
            by(UNAUTHORIZED, MINE, FORBIDDEN, MINE),
            check=asks_upstream_for_owner,
        ),
        vias=("bearer", "session"),
        marker=lambda w: '"userId":"alice"',
        upstream=True,
        api=True,
    ),
    "usage:plugin-generate": Route(
        lambda w: "/api/plugin/generate",
        post=Action(
            by(UNAUTHORIZED, OK, OK, OK),
            data=lambda w, p: {"prompt": PROMPT},
            json=True,
            check=generates_for_asker,
        ),
        vias=("bearer", "session"),
        upstream=True,
        api=True,
    ),
}


# --- The routes of the URL configuration -------------------------------------------------------


@dataclass(frozen=True)
class FoundRoute:
    key: str  # "namespace:name", or "namespace:[pattern]" for a route without a name
    pattern: str
    named: bool
    made_by_admin: bool


def project_routes() -> list[FoundRoute]:
    return list(_walk(get_resolver(), "", ""))


def _walk(resolver: URLResolver, prefix: str, namespace: str) -> Iterator[FoundRoute]:
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = ":".join(part for part in (namespace, entry.namespace) if part)
            yield from _walk(entry, pattern, inner)
            continue
        name = entry.name or f"[{pattern}]"
        key = f"{namespace}:{name}" if namespace else name
        yield FoundRoute(key, pattern, entry.name is not None, _made_by_admin(entry.callback))


def _made_by_admin(view) -> bool:
    """Django's admin adds two kinds of route without a name, which the project cannot name:
    each model's ``<id>/`` redirect to its change page, and the final catch-all."""
    if getattr(view, "model_admin", None) is not None:
        return getattr(view, "view_class", None) is RedirectView
    wrapped = getattr(view, "__wrapped__", None)
    return getattr(wrapped, "__func__", None) is AdminSite.catch_all_view


def test_every_route_of_the_project_has_a_name():
    unnamed = [
        route.pattern for route in project_routes() if not route.named and not route.made_by_admin
    ]
    assert not unnamed, (
        f"These routes have no name: {unnamed}. Give each a name= in its urls.py, so that "
        "the access matrix (and reverse()) can refer to it."
    )


def test_every_route_has_an_entry_and_every_entry_a_route():
    found = {route.key for route in project_routes()}
    missing = sorted(found - TABLE.keys())
    stale = sorted(TABLE.keys() - found)
    assert not missing and not stale, (
        f"Routes without an entry in TABLE (add what each persona gets): {missing}. "
        f"Entries in TABLE for no route (remove them): {stale}."
    )


def test_the_admin_routes_without_a_name_are_in_the_walk():
    # Guards _made_by_admin: if Django changed how it wraps them, they would count as the
    # project's unnamed routes, or vanish from the keys.
    made_by_admin = {route.key for route in project_routes() if route.made_by_admin}
    assert "admin:[admin/(?P<url>.*)$]" in made_by_admin
    assert "admin:[admin/usage/usagerecord/<path:object_id>/]" in made_by_admin
    assert len(made_by_admin) == 1 + len(ADMIN_MODELS)


def test_every_read_of_the_owner_data_says_whether_it_is_there():
    # A page that can show the owner's data must say, for the owner and the other user,
    # whether it does; else a leak to the other user would pass unseen.
    vague = [
        f"{key} {who}"
        for key, route in TABLE.items()
        if route.marker and route.get
        for who, expect in route.get.expect.items()
        if who.split("/")[0] in ("owner", "other")
        and 200 <= expect.status < 300
        and expect.owner_data is None
    ]
    assert not vague


# --- Asking ------------------------------------------------------------------------------------


def cases() -> Iterator:
    for key, route in TABLE.items():
        for method, action in (("GET", route.get), ("POST", route.post)):
            if action is None:
                continue
            for persona in PERSONAS:
                for via in ("none",) if persona == "anonymous" else route.vias:
                    yield pytest.param(
                        key, method, persona, via, id=f"{key}-{method}-{persona}-{via}"
                    )


class MatrixClient(Client):
    """Django's test client, enforcing CSRF as browsers meet it, with one request handler
    for the whole module, as a server process has: each new handler loads the middleware,
    and WhiteNoise's indexes every static file then (half a second here, per case)."""

    shared_handler: ClientHandler | None = None

    def __init__(self, **defaults) -> None:
        super().__init__(enforce_csrf_checks=True, **defaults)
        if MatrixClient.shared_handler is None:
            MatrixClient.shared_handler = self.handler
        self.handler = MatrixClient.shared_handler


def client_for(w: World, persona: str, via: str) -> Client:
    if via == "bearer":
        return MatrixClient(headers={"Authorization": f"Bearer {w.tokens[persona].raw}"})
    client = MatrixClient()
    if persona != "anonymous":
        client.force_login(w.users[persona])
    return client


def csrf_token(client: Client, page: str) -> str:
    """The token the site put in a form of ``page`` for this client's session."""
    response = client.get(page)
    assert response.status_code == 200, page
    return CSRF_FIELD.search(response.content.decode()).group(1)


def send(
    w: World, route: Route, method: str, persona: str, via: str, *, with_csrf: bool = True
) -> tuple[HttpResponse, Client, str]:
    url = route.url(w)
    if method == "GET":
        client = client_for(w, persona, via)
        return client.get(url), client, url
    client = client_for(w, "anonymous" if route.sign_in else persona, via)
    action = route.post
    data = action.data(w, persona) if action.data else {}
    headers = {}
    if with_csrf and via != "bearer":
        form_page = url if route.sign_in else "/accounts/login/"
        if persona != "anonymous" and not route.sign_in:
            form_page = "/accounts/password/"
        token = csrf_token(client, form_page)
        if action.json:
            headers["X-CSRFToken"] = token
        else:
            data = {**data, "csrfmiddlewaretoken": token}
    if action.json:
        response = client.post(
            url, json.dumps(data), content_type="application/json", headers=headers
        )
    else:
        response = client.post(url, data)
    return response, client, url


def body_of(response: HttpResponse) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def assert_answer(w: World, route: Route, expect: Expect, response: HttpResponse, url: str) -> None:
    body = body_of(response)
    assert response.status_code == expect.status, body[:500]
    if expect.to is not None:
        target = urlsplit(response["Location"])
        to = expect.to(w) if callable(expect.to) else expect.to
        assert target.path == to, response["Location"]
        if expect.next:
            assert parse_qs(target.query).get("next") == [url], response["Location"]
    if expect.owner_data is not None:
        assert (route.marker(w) in body) is expect.owner_data
    if route.api:
        # Never an HTML error page under /api/.
        assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
        if response.status_code >= 400:
            assert "error" in json.loads(body)


def start_upstream(w: World, request: pytest.FixtureRequest) -> None:
    """The stand-in, already knowing the owner's token usage (as from a past generation)."""
    w.upstream = request.getfixturevalue("upstream")
    status, _ = w.upstream.generate(json.dumps({"userId": "alice", "prompt": "Before"}).encode())
    assert status == 200


@pytest.mark.parametrize(("key", "method", "persona", "via"), list(cases()))
def test_each_persona_gets_the_expected_answer(key, method, persona, via, world, request):
    route = TABLE[key]
    if route.upstream:
        start_upstream(world, request)
    action = route.get if method == "GET" else route.post
    expect = action.expect_for(persona, via)
    response, client, url = send(world, route, method, persona, via)
    assert_answer(world, route, expect, response, url)
    if action.check:
        action.check(world, persona, expect.did_it, client)


def csrf_cases() -> Iterator:
    """Each session POST, by the persona for whom it would succeed."""
    for key, route in TABLE.items():
        if route.post is None or "session" not in route.vias:
            continue
        succeeds = [p for p in PERSONAS if route.post.expect_for(p, "session").did_it]
        if succeeds:
            yield pytest.param(key, succeeds[0], id=f"{key}-{succeeds[0]}")


@pytest.mark.parametrize(("key", "persona"), list(csrf_cases()))
def test_a_post_without_csrf_token_is_refused_and_changes_nothing(key, persona, world, request):
    route = TABLE[key]
    if route.upstream:
        start_upstream(world, request)
    response, client, _ = send(world, route, "POST", persona, "session", with_csrf=False)
    assert response.status_code == 403
    if route.api:
        assert "error" in response.json()
    route.post.check(world, persona, False, client)
