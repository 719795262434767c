"""Which colour each model has on the dashboard: chosen from its name, never from its rank.

The palette is ten clearly different hues, each with a light and a dark variant (the
``--model-N`` colours in ``static/dashboard/index.css``, every one at least 3.5:1 against
the panels of its scheme); "Other models" has its own grey, which no model gets. A model's
place in the palette is a stable hash of its name (SHA-256, not Python's ``hash()``, which
changes with every process), so it is the same in both charts and both tables, in every
range, after Refresh Data, and in light and dark.

Ten colours cannot tell eleven models apart: two names can hash to the same colour. One
chart never shows two models in one colour (it draws at most eight), because the models it
draws take their colours in the order of their names: each takes its hashed colour, or, when
a model earlier in that order already has it, the next free colour after it. A model whose
colour no other model in the chart shares keeps its hashed colour; only a model that
collides can look different in a view where the model it collides with is also drawn.
"""

import hashlib
from collections.abc import Iterable

PALETTE_SIZE = 10
OTHER = "other"  # the grey of "Other models"


def hashed_slot(model: str) -> int:
    """The model's own colour: its place in the palette, the same in every process."""
    digest = hashlib.sha256(model.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % PALETTE_SIZE


def chart_slots(models: Iterable[str]) -> dict[str, int]:
    """A different colour for each model of one chart, each its hashed one where it can be."""
    slots: dict[str, int] = {}
    taken: set[int] = set()
    for model in sorted(set(models)):
        if len(taken) == PALETTE_SIZE:  # more models than colours: start sharing again
            taken.clear()
        slot = hashed_slot(model)
        while slot in taken:
            slot = (slot + 1) % PALETTE_SIZE
        taken.add(slot)
        slots[model] = slot
    return slots
