"""Changing one's password, on the site's page and the admin's: wrong guesses of the current
password are limited per user (``THROTTLE_PASSWORD_CHANGE_RATE``).

Someone at a signed-in browser left open could otherwise try passwords until one is right,
and then lock the owner out. Each attempt is counted first with the cache's atomic counter
(``usage.throttles``, as sign-ins are), and a right one is given back, so only wrong
guesses add up and concurrent ones cannot pass the limit between them. Past it the current
password is not even checked: the answer (429, a blank form and how long to wait) is the
same whether the guess was right or wrong.
"""

import math
import time

from django import forms
from django.contrib import admin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from usage.throttles import give_back, hit

SCOPE = "password_change"


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    retry_after: int | None = None

    def clean_old_password(self) -> str:
        ident, now = str(self.user.pk), time.time()
        verdict = hit(SCOPE, ident, now=now)
        if not verdict.allowed:
            self.retry_after = verdict.retry_after
            raise forms.ValidationError("Too many wrong passwords.", code="throttled")
        old_password = super().clean_old_password()  # a wrong one raises: it stays counted
        give_back(SCOPE, ident, now=now)
        return old_password


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's page with the limited form; 429 with ``Retry-After`` past the limit."""

    form_class = PasswordChangeForm

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        if form.retry_after is None:
            return super().form_invalid(form)
        blank = self.get_form_class()(user=self.request.user)
        minutes = math.ceil(form.retry_after / 60)
        context = self.get_context_data(form=blank, retry_minutes=minutes)
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(form.retry_after)
        return response


class AdminSite(admin.AdminSite):
    """The admin, its password change limited like the site's (``dashboard.apps``)."""

    def password_change(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        request.current_app = self.name
        return PasswordChangeView.as_view(
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )(request)
