"""The ``demo`` account that ``./dev.py run`` makes for a first look at the site."""

import secrets
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from usage import budgets
from usage.models import Budget

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_ZONE = "Europe/Berlin"  # where the demo's made-up usage happens (seed_demo)


def create_demo_user() -> tuple[AbstractBaseUser, str]:
    """A new ``demo`` user with a random password, and that password, to be shown once."""
    password = secrets.token_urlsafe(12)
    return get_user_model().objects.create_user(DEMO_USERNAME, DEMO_EMAIL, password), password


def get_or_create_demo_user() -> tuple[AbstractBaseUser, str | None]:
    """The ``demo`` user, and its password if it had to be created (else None)."""
    user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
    if user:
        return user, None
    return create_demo_user()


def set_demo_budget(user: AbstractBaseUser) -> Budget:
    """A monthly budget that the demo's month so far has used 85% of, so that its card has
    something to show and its 50% and 80% alerts go out (printed to the console by
    ``./dev.py run``'s worker). In money when the demo's images have prices, else in images."""
    now = timezone.now()
    tz = ZoneInfo(DEMO_ZONE)
    spend = budgets.spend_in_month(user.pk, budgets.month_start(now, tz), tz)
    if spend.cost > 0:
        limit = max((spend.cost * 100 / 85).to_integral_value(ROUND_HALF_UP), Decimal(1))
        unit = Budget.Unit.MONEY
    else:
        limit, unit = max(round(spend.images * 100 / 85), 1), Budget.Unit.IMAGES
    return budgets.save_budget(
        user, unit=unit, limit=limit, thresholds=[50, 80, 100], time_zone=DEMO_ZONE
    )
