"""How callers prove who they are, site-wide: API tokens on the API, passwords at sign-in.

- ``BearerTokenAuthentication``: ``Authorization: Bearer usg_...`` on the API (the tokens
  themselves are made and checked in ``usage.tokens``).
- ``CsrfSessionAuthentication``: a signed-in browser's session on the API, its CSRF token
  checked from the ``X-CSRFToken`` header without parsing the body.
- ``ThrottledModelBackend``: password sign-in by username or email address (allauth's
  backend), with guessing throttled on every sign-in form (the site's and the admin's).
  The limit is in the authentication backend so that no login path can bypass it: each
  attempt counts against the account (``THROTTLE_LOGIN_RATE``; the same count whether it
  was named by username or by email address) and the client's address
  (``THROTTLE_LOGIN_ADDRESS_RATE``), and a successful one is given back, so only failures
  add up. Past either limit the password is not even checked, and
  ``request.sign_in_retry_after`` says how long to wait (the site's login page answers 429
  with it; the admin's shows its usual "incorrect" message).
"""

import time

from allauth.account.auth_backends import AuthenticationBackend

# The lookups allauth's backend itself makes, so that the account counted is the one it
# would check. An internal module: allauth is pinned exactly (requirements.txt).
from allauth.account.internal.userkit import filter_users_by_email, get_user_by_username
from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from rest_framework import authentication, exceptions

from usage.client_address import client_address
from usage.throttles import give_back, hit
from usage.tokens import checked_token, touch_last_used


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer usg_...``; sets ``request.auth`` to the ApiToken."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The Authorization header has no token.")
        token = checked_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        touch_last_used(token, client_address(request))
        return token.owner, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """REST framework's session authentication, with Django's CSRF check run on Django's own
    request. On REST framework's, the check reads ``request.POST``, which parses a JSON body
    with REST framework's parser (a deeply nested one was a 500, a bad one answered in REST
    framework's words); Django's reads no JSON body, and finds the token in the header."""

    def enforce_csrf(self, request) -> None:
        super().enforce_csrf(request._request)


MAX_NAME_LENGTH = 320  # the longest email address; usernames are at most 150


class ThrottledModelBackend(AuthenticationBackend):
    def authenticate(self, request, **credentials):
        if request is None:  # not a sign-in form: the test client, a management command
            return super().authenticate(request, **credentials)
        now = time.time()
        counted = [("login", account_key(credentials)), ("login_address", client_address(request))]
        verdicts = [hit(scope, ident, now=now) for scope, ident in counted]
        refused = [verdict.retry_after for verdict in verdicts if not verdict.allowed]
        if refused:
            request.sign_in_retry_after = max(refused)
            raise PermissionDenied  # authenticate() stops here and reports a failed login
        user = super().authenticate(request, **credentials)
        if user is not None:
            for scope, ident in counted:
                give_back(scope, ident, now=now)
        return user

    def get_user(self, user_id):
        """The signed-in user of a request, as Django's backend finds it, with the dashboard's
        profile (the saved time zone every signed-in page reads) in the same query."""
        users = get_user_model()._default_manager.select_related(PROFILE)
        try:
            user = users.get(pk=user_id)
        except ObjectDoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None


# The reverse name of ``dashboard.models.Profile.user``; by name, so that this module does not
# import the dashboard app.
PROFILE = "dashboard_profile"


def account_key(credentials: dict) -> str:
    """What one account's failed sign-ins are counted under: the account itself when the
    name or address given finds exactly one, so that switching between a username and an
    email address buys no extra guesses; else the name as given."""
    given = str(credentials.get("username") or credentials.get("email") or "")
    if not given or len(given) > MAX_NAME_LENGTH:  # no account has it: look nothing up
        return f"user:{given}"
    user = get_user_by_username(given)
    if user is None and "@" in given:
        users = filter_users_by_email(given, prefer_verified=True, for_login=True)
        user = users[0] if len(users) == 1 else None
    return f"account:{user.pk}" if user is not None else f"user:{given}"
