"""Usage per device: which API token, so which desktop app or machine, sent the records.

The rollups are counted per token (``usage.rollups``), so a breakdown by token or a filter
on one costs what the date range costs, like every other summary. Here: reading the
``token`` query parameter, and naming the tokens of a breakdown.

A token is named by the id of its ``ApiToken``; ``none`` (``NO_TOKEN`` in the rollups) is
the records sent without one. Only the owner's own tokens can be asked for: any other id
is refused with the same answer as one that does not exist, so that it tells nothing.
"""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from usage.models import NO_TOKEN, TOKEN_SCHEME, ApiToken
from usage.problems import InvalidQuery

NO_TOKEN_PARAM = "none"
NO_TOKEN_NAME = "No token"
DELETED_TOKEN_NAME = "Deleted token"
# Token ids are bigints: more digits than this is no token's, and never reaches the database.
_MAX_DIGITS = 18


def parse_token(owner: AbstractBaseUser, value: str | None) -> int | None:
    """``token``: None for every token, ``NO_TOKEN`` for ``none``, else one of the owner's
    token ids (revoked ones too: their usage stays theirs)."""
    if value is None or value == "":
        return None
    if value == NO_TOKEN_PARAM:
        return NO_TOKEN
    is_id = value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS
    if is_id and ApiToken.objects.filter(pk=int(value), owner=owner).exists():
        return int(value)
    raise InvalidQuery(
        "token", f"token must be the id of one of your API tokens, or {NO_TOKEN_PARAM}."
    )


@dataclass(frozen=True)
class TokenTotal:
    """One API token's images and events in a range, with what names it."""

    token_id: int  # NO_TOKEN for the records sent without one
    images: int
    events: int
    name: str | None  # None for NO_TOKEN, or for a token that no longer exists
    prefix: str | None
    revoked: bool


def breakdown(totals: list[TokenTotal]) -> list[dict]:
    """A range's totals per token (``usage.summary.range_totals``) as one entry each, most
    images first: its id, name, display prefix, whether it is revoked, and its share of the
    images.

    The records without a token have ``token: null``. A token id the owner has no token for
    any more (a token deleted outside the site) is kept, as ``DELETED_TOKEN_NAME``: the
    rollups never forget a token's usage, so the entries always add up to the totals.
    """
    all_images = sum(total.images for total in totals)
    entries = [
        {
            **_describe(total),
            "images": total.images,
            "events": total.events,
            "share": round(total.images / all_images, 4) if all_images else 0,
        }
        for total in totals
    ]
    return sorted(entries, key=lambda entry: (-entry["images"], entry["name"], entry["token"] or 0))


def _describe(total: TokenTotal) -> dict:
    if total.token_id == NO_TOKEN:
        return {"token": None, "name": NO_TOKEN_NAME, "prefix": None, "revoked": False}
    if total.name is None:
        return {
            "token": total.token_id,
            "name": DELETED_TOKEN_NAME,
            "prefix": None,
            "revoked": True,
        }
    return {
        "token": total.token_id,
        "name": total.name,
        "prefix": f"{TOKEN_SCHEME}{total.prefix}",
        "revoked": total.revoked,
    }
