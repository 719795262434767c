"""The peer's routes: ingestion at the site's address, and the two floors of health."""

from django.urls import path

from scripts.bench_peer.ingest import views

urlpatterns = [
    path("api/model-usage", views.UsageRecordCreateView.as_view()),
    path("api/health/bare-drf", views.BareHealthView.as_view()),
    path("api/health/plain", views.plain_health),
]
