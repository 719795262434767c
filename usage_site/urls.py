"""Root URLs: accounts (sign-in, sign-up, reset, email addresses), the dashboard, the API
under /api/ with its schema and docs, the admin."""

from allauth.account import views as allauth_views
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from dashboard.accounts import PasswordResetView, SignUpView
from dashboard.password import PasswordChangeView
from dashboard.signin import SignInView
from dashboard.views import home
from usage.api_docs import DocsView, SchemaView

urlpatterns = [
    # First: the API is what desktop apps call on every generation, and Django tries the
    # patterns in order.
    path("api/", include("usage.urls")),
    path("", home, name="home"),
    # allauth's account pages that the site uses (docs/accounts.md), under allauth's names;
    # not its own password change (the site's is throttled), nor its login-by-code and
    # reauthentication pages, which the settings leave off.
    path("accounts/login/", SignInView.as_view(), name="account_login"),
    path("accounts/logout/", allauth_views.logout, name="account_logout"),
    path("accounts/inactive/", allauth_views.account_inactive, name="account_inactive"),
    path("accounts/signup/", SignUpView.as_view(), name="account_signup"),
    path("accounts/email/", allauth_views.email, name="account_email"),
    path(
        "accounts/confirm-email/",
        allauth_views.email_verification_sent,
        name="account_email_verification_sent",
    ),
    re_path(
        r"^accounts/confirm-email/(?P<key>[-:\w]+)/$",
        allauth_views.confirm_email,
        name="account_confirm_email",
    ),
    path("accounts/password/reset/", PasswordResetView.as_view(), name="account_reset_password"),
    path(
        "accounts/password/reset/done/",
        allauth_views.password_reset_done,
        name="account_reset_password_done",
    ),
    re_path(
        r"^accounts/password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        allauth_views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
    path(
        "accounts/password/reset/key/done/",
        allauth_views.password_reset_from_key_done,
        name="account_reset_password_from_key_done",
    ),
    path(
        "accounts/password/",
        PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path(
        "api/docs/",
        DocsView.as_view(url_name="schema", template_name="api-docs.html"),
        name="api-docs",
    ),
]

handler500 = "usage.errors.server_error"
