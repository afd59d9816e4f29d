"""Two batches at once against PostgreSQL (``select_for_update`` does nothing on SQLite):
the whole price of each is checked under the campaign's lock, so exactly one fits and the
other is made not at all (no partial batch)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from imagen_assets import services
from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask
from imagen_assets.services import ImageLine
from tests.integration.test_concurrency import at_once

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgresql_only(stack_env: dict[str, str]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            f"row locks need PostgreSQL, the database is {connection.vendor}: "
            "run `make test-postgres`"
        )


def test_only_one_of_two_concurrent_batches_fits_and_the_other_makes_nothing() -> None:
    # wavespeed costs $0.04 an image: a 6-image batch ($0.24) fits a $0.40 budget once.
    lines = [
        ImageLine(prompt="Frost", aspect_ratio="1:1", count=3, line=2),
        ImageLine(prompt="Frost", aspect_ratio="16:9", count=3, line=2),
    ]
    for round_ in range(3):
        campaign = Campaign.objects.create(
            name=f"Tight {round_}", slug=f"tight-batch-{round_}", budget=Decimal("0.40")
        )
        outcomes = at_once(
            [
                lambda c=campaign: services.request_batch(
                    campaign=c, lines=lines, provider="wavespeed"
                )
            ]
            * 2
        )
        winners = [o for o in outcomes if isinstance(o, list)]
        losers = [o for o in outcomes if isinstance(o, services.BudgetExceeded)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert "$0.16" in str(losers[0])  # left after the winner's reservation
        assert GenerationRequest.objects.filter(campaign=campaign).count() == 1
        assert GenerationTask.objects.filter(campaign=campaign).count() == 2
        assert GeneratedImage.objects.filter(campaign=campaign).count() == 6
        assert campaign.committed_spend() == Decimal("0.24")
