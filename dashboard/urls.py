"""The signed-in pages, under /dashboard/."""

from django.urls import path

from dashboard import budget, views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("data/", views.data, name="data"),
    path("timezone/", views.set_time_zone, name="timezone"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke, name="revoke"),
    path("tokens/<int:token_id>/rename/", views.rename, name="rename"),
    path("tokens/<int:token_id>/remove/", views.remove, name="remove"),
    path("budget/", budget.budget, name="budget"),
    path("budget/delete/", budget.delete_budget, name="budget-delete"),
    path("budget/test-event/", budget.test_event, name="budget-test-event"),
    path("export.csv", views.export_csv, name="export"),
    path("daily-totals.csv", views.export_totals_csv, name="export-totals"),
]
