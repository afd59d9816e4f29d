"""services.Spend: the budget arithmetic of the refusal, the campaign page and the generate page."""

from __future__ import annotations

from decimal import Decimal

import pytest

from imagen_assets.services import Spend


def spend(committed: str, budget: str | None) -> Spend:
    return Spend(committed=Decimal(committed), budget=None if budget is None else Decimal(budget))


class LeftTests:
    def test_is_the_budget_minus_what_is_committed(self) -> None:
        assert spend("1.2345", "50.00").left == Decimal("48.7655")

    def test_is_never_negative(self) -> None:
        assert spend("0.30", "0.10").left == Decimal(0)

    def test_is_none_without_a_budget(self) -> None:
        assert spend("1000", None).left is None


class PercentTests:
    @pytest.mark.parametrize(
        ("committed", "budget", "percent"),
        [
            ("0", "50", 0),
            ("25", "50", 50),
            ("49.99", "50", 99),  # truncated, not rounded up to "full"
            ("50", "50", 100),
            ("80", "50", 100),  # capped
            ("0.0001", "50", 1),  # a sliver once anything is committed
            ("0", "0", 0),
            ("0.01", "0", 100),  # a zero budget is full at the first cent
        ],
    )
    def test_rules(self, committed: str, budget: str, percent: int) -> None:
        assert spend(committed, budget).percent == percent

    def test_is_none_without_a_budget(self) -> None:
        assert spend("5", None).percent is None


class AllowsTests:
    def test_a_cost_that_spends_the_budget_exactly_is_allowed(self) -> None:
        assert spend("0.38", "0.50").allows(Decimal("0.12"))

    def test_a_cost_over_what_is_left_is_not(self) -> None:
        assert not spend("0.42", "0.50").allows(Decimal("0.12"))

    def test_a_campaign_over_its_budget_allows_nothing_not_even_a_free_request(self) -> None:
        over = spend("0.30", "0.10")
        assert over.over
        assert not over.allows(Decimal(0))

    def test_no_budget_allows_anything(self) -> None:
        unlimited = spend("1000", None)
        assert unlimited.allows(Decimal("1000000"))
        assert not unlimited.over

    def test_over_is_strictly_more_than_the_budget(self) -> None:
        assert not spend("0.50", "0.50").over
        assert spend("0.5001", "0.50").over
