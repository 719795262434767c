"""The naive peer that ``scripts/bench.py`` serves beside the site (issue 14).

The simplest natural Django REST framework project doing what the site's ingestion does: a
``ModelSerializer`` per record and ``objects.create``, no authentication, no throttles, on
the site's database settings and gunicorn configuration. It is a yardstick for the bench,
never part of the site: nothing in ``usage``, ``dashboard`` or ``usage_site`` imports it.
"""
