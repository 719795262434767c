"""Hostile model, token and user names: markup, a ``</script>`` that tries to leave the chart
data, spreadsheet formulas, and text that is already escaped.

Stored through the API and the ORM by ``tests/test_bad_input.py`` and shown in a real
browser by ``tests/browser/test_hostile_names.py``: every page must show each one as text.
"""

# Eight, so that the charts show each one rather than grouping some as "Other models".
HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '=HYPERLINK("http://x")',
    "+1",
    "-1",
    "@SUM(A1)",
    "</script><script>alert(2)</script>",
    "&lt;b&gt;already escaped&lt;/b&gt;",
]
HOSTILE_EVENT_ID = '=cmd|" /C calc"!A0'
HOSTILE_TOKEN_NAME = "<script>alert('token')</script>"
# Django's username validator refuses markup, but users made in code skip it.
HOSTILE_USERNAME = '"><img src=x onerror=alert(3)>'
# A valid username that a spreadsheet would run.
FORMULA_USERNAME = "@eve"
