"""The ``demo`` account that ``./dev.py run`` makes for a first look at the site."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
# How a command is run by hand on the site that ``./dev.py run`` started, pasted as it is
# from the project folder: the virtual environment's Python (a bare ``python`` has no
# Django) and DEBUG=1 as ``run`` sets it (without it the settings want a SECRET_KEY).
MANAGE = "DEBUG=1 .venv/bin/python manage.py"


def manage_hint(command: str) -> str:
    """``command`` (``"createsuperuser"``) as a line to paste into a shell."""
    return f"{MANAGE} {command}"


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
