"""JSON as the site reads it, from desktop apps, browsers and the external API alike.

Strict: ``NaN`` and ``Infinity`` are not JSON (Python accepts them; nothing could pass them
on). A document nested too deeply for the parser is a ``ValueError`` like any other bad
JSON, of its own type so that a caller can say which it was.
"""

import json
from typing import Any


class NestedTooDeeply(ValueError):
    pass


def loads(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise NestedTooDeeply("JSON nested too deeply") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
