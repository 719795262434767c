"""The sign-in page: allauth's, by username or email address. Password guessing is limited in
``usage.auth.ThrottledModelBackend``, which every sign-in form (this one, the admin's) goes
through; this page only says so."""

import math

from allauth.account import views as allauth_views
from allauth.account.forms import LoginForm
from django.conf import settings
from django.core.exceptions import ValidationError

MAX_LOGIN_LENGTH = 320  # an email address's longest (RFC 3696 errata); usernames are 150


class SignInForm(LoginForm):
    """allauth's form, its ``login`` field (a username or an email address) posted as
    ``username``, as before allauth: scripts, password managers and the tests that sign in
    through the form keep working."""

    def add_prefix(self, field_name: str) -> str:
        return super().add_prefix("username" if field_name == "login" else field_name)

    def clean_login(self) -> str:
        # No username or address is longer; a longer one would be looked up as a LIKE
        # pattern, which SQLite refuses past 50,000 bytes (a 503).
        login = super().clean_login()
        if len(login) > MAX_LOGIN_LENGTH:
            raise ValidationError("That is longer than any username or email address.")
        return login


class SignInView(allauth_views.LoginView):
    """allauth's login page; 429 with ``Retry-After`` once the attempts are used up."""

    form_class = SignInForm

    def form_invalid(self, form):
        retry_after = getattr(self.request, "sign_in_retry_after", None)
        if retry_after is None:
            return super().form_invalid(form)
        context = self.get_context_data(form=form, retry_minutes=math.ceil(retry_after / 60))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(retry_after)
        return response

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "signup_open": settings.SIGNUP_OPEN}
