"""Self-service accounts with django-allauth: sign-up, email verification, password reset and
the email addresses page (docs/accounts.md).

allauth does the flows; this module sets the site's rules around them:

- Sign-up is open only with ``SIGNUP_OPEN``; closed, the sign-up page says so (403), with no
  form.
- Sign-up and reset requests are limited with the site's atomic cache counters
  (``usage.throttles``), per client address and per email address, like sign-in. Each POST
  counts against its address before anything else, and a valid form against its email
  address, so that concurrent requests can never pass a limit between them. The answer past
  a limit (429) does not depend on whether the address has an account.
- Accounts made by sign-up must verify their address before their first sign-in. Accounts
  an admin made (``createsuperuser``, the admin, ``seed_demo``) have no address on file with
  allauth and sign in as before; so does any account that has signed in once, so that adding
  an address it has not verified yet never locks it out.
"""

import math
import time

from allauth.account import views as allauth_views
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.account.stages import EmailVerificationStage
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.generic.edit import FormView

from usage.client_address import client_address
from usage.throttles import Verdict, hit


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.SIGNUP_OPEN

    def get_client_ip(self, request: HttpRequest) -> str:
        # The address the site's own limits and audit log use (trusted proxies only).
        return client_address(request)

    def get_login_stages(self) -> list[str]:
        allauths = "allauth.account.stages.EmailVerificationStage"
        ours = f"{__name__}.FirstSignInVerificationStage"
        return [ours if stage == allauths else stage for stage in super().get_login_stages()]


class FirstSignInVerificationStage(EmailVerificationStage):
    """allauth's mandatory verification, for accounts made by sign-up that never signed in."""

    def handle(self):
        user = self.login.user
        made_by_admin = not EmailAddress.objects.filter(user=user).exists()
        if user is not None and (made_by_admin or user.last_login is not None):
            return None, True
        return super().handle()


def refused(verdicts: list[Verdict]) -> int | None:
    """Seconds to wait when any of ``verdicts`` refused, else None."""
    waits = [verdict.retry_after for verdict in verdicts if not verdict.allowed]
    return max(waits) if waits else None


def too_many(view: FormView, retry_after: int) -> HttpResponse:
    """The view's page with a blank form, saying how long to wait: 429 with Retry-After."""
    kwargs = view.get_form_kwargs()
    kwargs.pop("data", None)
    kwargs.pop("files", None)
    context = view.get_context_data(
        form=view.get_form_class()(**kwargs), retry_minutes=math.ceil(retry_after / 60)
    )
    response = view.render_to_response(context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


class ThrottledFormMixin:
    """Counts each POST against the client's address (``address_scope``) and each valid form
    against its email address (``email_scope``); past either limit, ``too_many``."""

    address_scope = ""
    email_scope = ""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        wait = refused([hit(self.address_scope, client_address(request))])
        if wait is not None:
            return too_many(self, wait)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        email = form.cleaned_data["email"].strip().lower()
        wait = refused([hit(self.email_scope, email, now=time.time())])
        if wait is not None:
            return too_many(self, wait)
        return super().form_valid(form)


class SignUpView(ThrottledFormMixin, allauth_views.SignupView):
    address_scope = "signup_address"
    email_scope = "signup"

    def closed(self) -> HttpResponse:
        return self.response_class(
            request=self.request, template=self.template_name_signup_closed, status=403
        )


class PasswordResetView(ThrottledFormMixin, allauth_views.PasswordResetView):
    address_scope = "password_reset_address"
    email_scope = "password_reset"
