"""API routes. Each accepts an optional trailing slash, so that a POST is never redirected."""

from django.urls import re_path

from usage import views

app_name = "usage"

urlpatterns = [
    re_path(r"^model-usage/?$", views.model_usage, name="model-usage"),
    re_path(r"^model-usage/summary/?$", views.UsageSummaryView.as_view(), name="summary"),
    re_path(r"^budget/?$", views.BudgetView.as_view(), name="budget"),
    re_path(r"^health/?$", views.HealthView.as_view(), name="health"),
    re_path(r"^health/simple/?$", views.SimpleHealthView.as_view(), name="health-simple"),
    re_path(r"^user/token-usage/?$", views.TokenUsageView.as_view(), name="token-usage"),
    re_path(r"^plugin/generate/?$", views.PluginGenerateView.as_view(), name="plugin-generate"),
]
