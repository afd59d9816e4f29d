"""Money as a person reads it: ``$24.87``. One function, used by the ``money`` template
filter, the budget and quota refusals and the command line, so every screen rounds alike.

Stored amounts keep four decimals (a price per image such as $0.0425); only what is shown
is rounded. A unit price may ask for its four places (``places=4``: two to four decimals).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

#: What an unknown amount reads as.
NO_AMOUNT = "—"


def dollars(value: Decimal | int | str | None, places: int = 2) -> str:
    """``value`` in dollars, rounded half up to ``places`` decimals (2 by default), with
    thousands separators: ``$1,234.50``. With ``places`` above two, trailing zeros past the
    second decimal are dropped (``$0.0425``, ``$0.04``). None reads as a dash."""
    if value is None or value == "":
        return NO_AMOUNT
    places = max(2, min(4, int(places)))
    amount = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if amount == 0:
        amount = abs(amount)  # no "$-0.00"
    sign = "-" if amount < 0 else ""
    whole, _sep, fraction = f"{abs(amount):,.{places}f}".partition(".")
    return f"{sign}${whole}.{fraction.rstrip('0').ljust(2, '0')}"
