"""English dates and times as the whole site writes them: "3 Dec 2026, 19:31".

Django's own English formats ("Dec. 3, 2026, 7:31 p.m.") are what the admin would show
otherwise, beside pages that say 19:31. Only display formats are set here; what forms
accept (the ``*_INPUT_FORMATS``) stays Django's.
"""

DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "j M Y, H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j F"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
