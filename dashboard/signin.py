"""Signing in, with password guessing throttled on every sign-in form (the site's, the admin's).

The limit is in the authentication backend, so that no login path can bypass it: each
attempt counts against the account's name (``THROTTLE_LOGIN_RATE``) and the client's
address (``THROTTLE_LOGIN_ADDRESS_RATE``), and a successful one is given back, so only
failures add up. Past either limit the password is not even checked. The site's login page
then answers 429 with ``Retry-After`` and says how long to wait; the admin's shows its
usual "incorrect" message.
"""

import math
import time

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from usage.throttles import client_address, give_back, hit


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:  # not a sign-in form: the test client, a management command
            return super().authenticate(request, username, password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        now = time.time()
        counted = [("login", f"user:{username}"), ("login_address", client_address(request))]
        verdicts = [hit(scope, ident, now=now) for scope, ident in counted]
        refused = [verdict.retry_after for verdict in verdicts if not verdict.allowed]
        if refused:
            request.sign_in_retry_after = max(refused)
            raise PermissionDenied  # authenticate() stops here and reports a failed login
        user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            for scope, ident in counted:
                give_back(scope, ident, now=now)
        return user


class SignInView(auth_views.LoginView):
    """Django's login page; 429 with ``Retry-After`` once the attempts are used up."""

    redirect_authenticated_user = True

    def form_invalid(self, form):
        retry_after = getattr(self.request, "sign_in_retry_after", None)
        if retry_after is None:
            return super().form_invalid(form)
        context = self.get_context_data(form=form, retry_minutes=math.ceil(retry_after / 60))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(retry_after)
        return response
