"""Root URLs: sign-in, the dashboard, the API under /api/ with its schema and docs, the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.password import PasswordChangeView
from dashboard.signin import SignInView
from dashboard.views import home
from usage.api_docs import DocsView, SchemaView

urlpatterns = [
    path("", home, name="home"),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
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
    path("api/", include("usage.urls")),
]

handler500 = "usage.errors.server_error"
