"""Two requests of one user at their daily quota, at once, each in its own connection
against PostgreSQL (``select_for_update`` does nothing on SQLite): exactly one passes.

The two requests are for two different campaigns, so the campaign's row lock (the budget's)
does not line them up: only the user's row lock in services.check_user_quota does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from imagen_assets import services
from imagen_assets.models import Campaign, GenerationRequest, GenerationTask
from tests.integration.test_concurrency import at_once

pytestmark = [pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgresql_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            f"row locks need PostgreSQL, the database is {connection.vendor}: "
            "run `make test-postgres`"
        )


@pytest.fixture
def paid(settings: Any) -> None:
    """WaveSpeed at $0.04 an image, with a key (nothing reaches it: jobs are recorded)."""
    config = dict(settings.IMAGEN_ASSETS)
    config["PROVIDERS"] = {
        **config["PROVIDERS"],
        "wavespeed": {
            "BACKEND": "imagen_assets.providers.wavespeed.WaveSpeedProvider",
            "OPTIONS": {"API_KEY": "k", "PRICE_PER_IMAGE": "0.04"},
        },
    }
    settings.IMAGEN_ASSETS = config


def race(user: Any, round_: int, count: int) -> list[Any]:
    campaigns = [
        Campaign.objects.create(name=f"Race {round_} {side}", slug=f"race-{round_}-{side}")
        for side in ("a", "b")
    ]
    return at_once(
        [
            lambda c=campaign: services.request_images(
                campaign=c, prompt="Frost", count=count, provider="wavespeed", user=user
            )
            for campaign in campaigns
        ]
    )


class QuotaRaceTests:
    def test_only_one_of_two_requests_fits_the_image_quota(
        self, settings: Any, paid: None, django_user_model: Any, enqueued: Any
    ) -> None:
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "USER_DAILY_IMAGES": 3}
        for round_ in range(3):
            user = django_user_model.objects.create_user(f"racer{round_}")
            outcomes = race(user, round_, 2)  # 2 + 2 > 3: one of the two

            winners = [o for o in outcomes if isinstance(o, list)]
            losers = [o for o in outcomes if isinstance(o, services.QuotaExceeded)]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            assert str(losers[0]).startswith(
                "You have used 2 of your 3 images today; this asks for 2."
            )
            mine = GenerationTask.objects.filter(requested_by=user)
            assert sum(task.num_images for task in mine) == 2
            assert GenerationRequest.objects.filter(requested_by=user).count() == 1

    def test_only_one_of_two_requests_fits_the_spend_quota(
        self, settings: Any, paid: None, django_user_model: Any, enqueued: Any
    ) -> None:
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "USER_DAILY_SPEND": "0.10"}
        for round_ in range(3):
            user = django_user_model.objects.create_user(f"spender{round_}")
            outcomes = race(user, round_, 2)  # $0.08 twice in a $0.10 day

            winners = [o for o in outcomes if isinstance(o, list)]
            losers = [o for o in outcomes if isinstance(o, services.QuotaExceeded)]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            assert "You have used $0.08 of your $0.10 daily spend" in str(losers[0])
            total = sum(
                (t.estimated_cost for t in GenerationTask.objects.filter(requested_by=user)),
                Decimal(0),
            )
            assert total == Decimal("0.08")
