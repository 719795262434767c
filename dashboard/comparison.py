"""A figure of the range against the same figure in the period of the same length before it.

The dashboard's cards show "+12%" with an arrow; these functions decide the number, the
direction and the plain words of its tooltip. Whole percents, rounded half away from zero
with exact decimals, so that the page and a reader with a calculator agree.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from usage.summary import DateRange

MINUS = "\N{MINUS SIGN}"  # a real minus, as wide as the plus beside it
NOTHING = "\N{EN DASH}"
ARROWS = {"up": "↑", "down": "↓", "same": "→", "new": "↑", "none": ""}


def previous_range(date_range: DateRange) -> DateRange:
    """The whole days just before the range, as many as it has, in the same zone."""
    length = timedelta(days=date_range.days)
    return DateRange(date_range.start - length, date_range.start - timedelta(days=1), date_range.tz)


def period_words(days: int) -> str:
    return "the day before" if days == 1 else f"the {days} days before"


def versus_words(days: int) -> str:
    """What a card writes beside its "+12%", where a tooltip cannot be seen (a phone)."""
    return "vs the day before" if days == 1 else f"vs the previous {days} days"


@dataclass(frozen=True)
class Change:
    """``now`` against ``before``, for a figure called ``what`` ("images"); for money,
    ``amount`` is ``now`` as the page writes it ("12.50 USD")."""

    now: int | Decimal
    before: int | Decimal
    what: str
    period: str  # "the 30 days before"
    amount: str = ""

    @property
    def percent(self) -> int | None:
        """The change in whole percent; None when there was nothing before to compare with."""
        if self.before == 0:
            return None
        exact = Decimal(self.now - self.before) * 100 / Decimal(self.before)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    @property
    def direction(self) -> str:
        if self.before == 0:
            return "new" if self.now else "none"
        if self.now == self.before:
            return "same"
        return "up" if self.now > self.before else "down"

    @property
    def arrow(self) -> str:
        return ARROWS[self.direction]

    @property
    def shown(self) -> str:
        """``+12%``, ``-8%`` (with a real minus), ``0%``, ``new``, or a dash for nothing at all."""
        direction = self.direction
        if direction in ("new", "none"):
            return "new" if direction == "new" else NOTHING
        percent = self.percent or 0
        if percent == 0 and direction != "same":
            return "<1%"  # 1,001 against 1,000: a change, but not a whole percent
        return f"+{percent}%" if percent > 0 else f"{MINUS}{-percent}%" if percent < 0 else "0%"

    @property
    def words(self) -> str:
        """The tooltip, without the dates: "12% more images than the 30 days before"."""
        direction = self.direction
        if direction == "none":
            return f"No {self.what} in this range or in {self.period}"
        if direction == "new":
            if self.amount:
                what = self.what[:1].upper() + self.what[1:]  # "Cost of SDXL", name kept
                return f"{what}: {self.amount}, nothing in {self.period}"
            return f"{self.now:,} {self.what}, none in {self.period}"
        if direction == "same":
            if self.amount:
                return f"The same {self.what} as in {self.period}"
            return f"As many {self.what} as in {self.period}"
        amount = self.shown.lstrip(f"+{MINUS}").replace("<1%", "Under 1%")
        if self.amount:  # money: a higher cost, not "more cost"
            more = "higher" if direction == "up" else "lower"
        else:
            more = "more" if direction == "up" else "fewer"
        return f"{amount} {more} {self.what} than {self.period}"
