"""Two workers starting submits for the last slot of a capped provider at once, each in its
own connection against PostgreSQL (``select_for_update`` does nothing on SQLite): exactly
one starts; the other waits (imagen_assets.capacity)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from imagen_assets import capacity, lifecycle
from imagen_assets.models import Campaign, GenerationTask
from tests.integration.test_concurrency import at_once

pytestmark = [pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgresql_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            f"row locks need PostgreSQL, the database is {connection.vendor}: "
            "run `make test-postgres`"
        )


def claimed(campaign: Campaign, n: int) -> list[tuple[int, Any]]:
    """``n`` queued wave tasks, each claimed by its own submit run: (id, lease)."""
    lease = timezone.now() + timedelta(minutes=2)
    tasks = []
    for _ in range(n):
        task = GenerationTask.objects.create(
            campaign=campaign,
            provider="wave",
            model="imagen-4.0",
            prompt="Frost",
            aspect_ratio="1:1",
            num_images=1,
        )
        assert lifecycle.claim_submit(task.pk, lease)
        tasks.append((task.pk, lease))
    return tasks


class CapacityRaceTests:
    @pytest.mark.parametrize("cap,racers", [(1, 2), (3, 8)])
    def test_the_last_slots_go_to_exactly_as_many_as_fit(self, cap: int, racers: int) -> None:
        for round_ in range(3):
            campaign = Campaign.objects.create(
                name=f"Cap {cap} {round_}", slug=f"cap-{cap}-{round_}"
            )
            tasks = claimed(campaign, racers)

            outcomes = at_once(
                [
                    lambda task=task: capacity.start_submit(
                        task[0], task[1], "wave", cap, lambda n: f"{n} running"
                    )
                    for task in tasks
                ]
            )

            starts = [outcome for outcome in outcomes if outcome[0] is capacity.Start.STARTED]
            full = [outcome for outcome in outcomes if outcome[0] is capacity.Start.FULL]
            assert len(starts) == cap and len(full) == racers - cap, outcomes
            assert capacity.in_flight_tasks("wave").count() == cap
            # What a refused run saw: the provider full; its claim is given back, saying so.
            assert all(running == cap for _, running in full)
            waiting = GenerationTask.objects.filter(campaign=campaign, submit_started_at=None)
            assert waiting.count() == racers - cap
            assert set(waiting.values_list("error_message", flat=True)) == {f"{cap} running"}
            assert set(waiting.values_list("submit_lease_until", flat=True)) == {None}
            # The next round starts from a provider with free slots again.
            GenerationTask.objects.filter(campaign=campaign).update(status="succeeded")
            assert capacity.in_flight_tasks("wave").count() == 0
