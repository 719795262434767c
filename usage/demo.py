"""The ``demo`` account that ``./dev.py run`` makes for a first look at the site."""

import secrets
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from usage import budgets, costs
from usage.models import Budget, ModelPrice

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
# How a command is run by hand on the site that ``./dev.py run`` started, pasted as it is
# from the project folder: the virtual environment's Python (a bare ``python`` has no
# Django) and DEBUG=1 as ``run`` sets it (without it the settings want a SECRET_KEY).
MANAGE = "DEBUG=1 .venv/bin/python manage.py"


def manage_hint(command: str) -> str:
    """``command`` (``"createsuperuser"``) as a line to paste into a shell."""
    return f"{MANAGE} {command}"


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
        cent = Decimal(1).scaleb(-costs.decimals())
        limit = max((spend.cost * 100 / 85).quantize(cent, ROUND_HALF_UP), cent)
        unit = Budget.Unit.MONEY
    else:
        limit, unit = max(round(spend.images * 100 / 85), 1), Budget.Unit.IMAGES
    return budgets.save_budget(
        user, unit=unit, limit=limit, thresholds=[50, 80, 100], time_zone=DEMO_ZONE
    )


# Prices per image in the site currency: the first from the start of the demo's range, the
# second (if any) from a third of the way back, at 10:15 UTC, so that prices change inside
# a day. Stable Diffusion 1.5 has none: it shows "no price".
DEMO_PRICES = {
    "Stable Diffusion XL": ("0.0040", None),
    "DALL-E 3": ("0.0400", "0.0320"),
    "Midjourney v6": ("0.0250", None),
    "Flux.1 [dev]": ("0.0030", None),
    "Imagen 3": ("0.0300", "0.0350"),
}


def set_demo_prices(now: datetime, days: int) -> int:
    """Give the demo's models their prices, one change inside the range, unless a model has
    prices already (prices are the site's, not the demo user's: staff's are kept).
    Returns how many prices were added."""
    start = datetime.combine((now - timedelta(days=days + 1)).date(), datetime.min.time(), UTC)
    change = datetime.combine((now - timedelta(days=days // 3)).date(), datetime.min.time(), UTC)
    change += timedelta(hours=10, minutes=15)
    priced = set(ModelPrice.objects.values_list("model", flat=True).distinct())
    added = [
        ModelPrice(model=model, price_per_image=Decimal(amount), valid_from=valid_from)
        for model, amounts in DEMO_PRICES.items()
        if model not in priced
        for amount, valid_from in zip(amounts, (start, change), strict=True)
        if amount is not None
    ]
    ModelPrice.objects.bulk_create(added)
    return len(added)
