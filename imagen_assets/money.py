"""Money as a person reads it: ``$24.87``. One module, used by the ``money`` and
``unit_price`` template filters, the budget and quota refusals, the spend report and the
command line, so every screen rounds alike.

Stored amounts keep four decimals (a price per image such as $0.0425); only what is shown
is rounded, half up to the cent. A price per image that is a fraction of a cent reads in
cents (``4.25¢``) so that "4 x $0.04 = $0.17" never appears.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

#: What an unknown amount reads as.
NO_AMOUNT = "—"
CENT = Decimal("0.01")


def dollars(value: Decimal | int | str | None) -> str:
    """``value`` in dollars with two decimals and thousands separators (``$1,234.50``). An
    amount under half a cent but not zero reads ``<$0.01`` rather than a misleading
    ``$0.00``; None reads as a dash."""
    if value is None or value == "":
        return NO_AMOUNT
    exact = Decimal(value)
    amount = exact.quantize(CENT, rounding=ROUND_HALF_UP)
    if exact and not amount:
        return "<$0.01" if exact > 0 else "-<$0.01"
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def unit_price(value: Decimal | int | str | None) -> str:
    """A price per image, which may be a fraction of a cent: ``4.25¢`` for $0.0425, and
    ``$0.04`` when it is whole cents. A total is always :func:`dollars`."""
    if value is None or value == "":
        return NO_AMOUNT
    exact = Decimal(value)
    if exact == exact.quantize(CENT):
        return dollars(exact)
    cents = (exact * 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{cents.normalize():f}\N{CENT SIGN}"
