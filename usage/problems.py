"""Every failure the site reports: one exception type, ``Problem``, with no HTTP in it.

A problem carries what its answer needs, and nothing about how that answer is sent:

- ``status``: how the failure ranks, as the HTTP status number it is answered with;
- ``code``: a stable name for programs (``docs/api.md`` lists them all);
- ``message``: one sentence for people, never anything the upstream said about itself;
- ``extra``: more fields of the error body, such as ``field`` for a bad query parameter;
- ``retry_after``: seconds after which trying again may work, when it may.

Business code raises them; ``usage.errors`` turns any of them into
``{"error": message, "code": code, **extra}`` for the API, and the dashboard's JSON and CSV
views do the same in their own formats. Subclasses exist where callers catch one kind
(``InvalidQuery``, ``usage.external_api.ExternalApiError``), not for every code.
"""


class Problem(Exception):
    status = 400
    code = "bad_request"
    message = "The request is invalid."
    retry_after: int | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        **extra,
    ):
        super().__init__(message or self.message)
        # Only what is given overrides the class's defaults.
        for name, value in (
            ("message", message),
            ("status", status),
            ("code", code),
            ("retry_after", retry_after),
        ):
            if value is not None:
                setattr(self, name, value)
        self.extra = extra

    def as_body(self) -> dict:
        return {"error": self.message, "code": self.code, **self.extra}


class InvalidBody(Problem):
    """A request body that cannot be used as a whole: nothing in it is stored."""

    code = "invalid_body"
    message = "The body is not valid JSON."


class BodyTooLarge(InvalidBody):
    # The code stays ``invalid_body`` (it was documented so first); the 413 says the rest.
    status = 413
    message = "The request body is too large."


class InvalidQuery(Problem):
    """A bad query parameter (or form field), named in ``field``."""

    code = "invalid_query"

    def __init__(self, field: str, message: str):
        super().__init__(message, field=field)
        self.field = field


class Forbidden(Problem):
    status = 403
    code = "forbidden"
    message = "You may not do this."


class TooManyRequests(Problem):
    status = 429
    code = "throttled"
    message = "Too many requests; try again later."


class DatabaseUnavailable(Problem):
    status = 503
    code = "database_unavailable"
    message = "The database is unavailable; try again shortly."
    retry_after = 5
