from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class DashboardConfig(AppConfig):
    default = True
    name = "dashboard"
    verbose_name = "Dashboard"


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the password change of ``dashboard.password``."""

    default = False  # listed by its path in INSTALLED_APPS, for django.contrib.admin
    default_site = "dashboard.password.AdminSite"
