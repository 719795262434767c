"""The sign-in page. Password guessing is limited in ``usage.auth.ThrottledModelBackend``,
which every sign-in form (this one, the admin's) goes through; this page only says so."""

import math

from django.contrib.auth import views as auth_views


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
