"""Batches in the services: one request for many lines, all or nothing, the whole price
checked once against the budget under the campaign's lock; the single request is a
one-line batch through the same code. Also alt text drafts and edits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from unit_helpers import imagen_settings, make_campaign

from imagen_assets import again, jobs, services
from imagen_assets.models import Activity, Brand, Campaign, GeneratedImage, GenerationRequest
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.services import BudgetExceeded, GenerationRequestError, ImageLine
from imagen_assets.status import CampaignStatus, ImageStatus, ReviewStatus

pytestmark = pytest.mark.django_db


class SquareOnlyProvider(WaveSpeedProvider):
    """A provider that offers fewer aspect ratios than Imagen has."""

    display_name = "Square Only"
    aspect_ratios: ClassVar[tuple[str, ...]] = ("1:1", "4:3")


@pytest.fixture
def campaign() -> Campaign:
    return make_campaign(brand_prompt="Pastel palette, soft light.", budget=Decimal("1.00"))


def lines(*specs: tuple[str, str, int]) -> list[ImageLine]:
    return [
        ImageLine(prompt=prompt, aspect_ratio=ratio, count=count, line=number)
        for number, (prompt, ratio, count) in enumerate(specs, start=2)
    ]


def nothing_created() -> bool:
    return not GenerationRequest.objects.exists() and not GeneratedImage.objects.exists()


class BatchTests:
    def test_one_request_for_every_line_with_consecutive_seeds(
        self, campaign, enqueued, django_capture_on_commit_callbacks
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            tasks = services.request_batch(
                campaign=campaign,
                lines=lines(("Kite", "1:1", 5), ("Kite", "16:9", 1), ("Dunes", "9:16", 2)),
                seed=40,
            )
        [request] = GenerationRequest.objects.all()
        assert request.origin == GenerationRequest.Origin.BATCH
        assert request.count == 8
        assert request.prompt == "Kite\nDunes"
        assert [(t.aspect_ratio, t.num_images, t.seed) for t in tasks] == [
            ("1:1", 4, 40),
            ("1:1", 1, 41),
            ("16:9", 1, 42),
            ("9:16", 2, 43),
        ]
        assert {t.request_id for t in tasks} == {request.pk}
        assert all(t.prompt.endswith("Pastel palette, soft light.") for t in tasks)
        assert GeneratedImage.objects.filter(task__request=request).count() == 8
        sent = [pk for job in enqueued if job.func is jobs.submit_many for pk in job.args[0]]
        assert sent == [t.pk for t in tasks]
        assert Activity.objects.filter(verb=Activity.Verb.GENERATED).count() == 1

    def test_each_task_keeps_its_own_lines_prompt_as_written(self, campaign) -> None:
        # The request holds every line; an image of the batch (its list row, "Retry") is
        # about its own line's words, without the campaign's.
        tasks = services.request_batch(
            campaign=campaign, lines=lines(("Kite", "1:1", 1), ("Dunes", "9:16", 1))
        )
        assert [task.prompt_as_written() for task in tasks] == ["Kite", "Dunes"]
        dunes = GeneratedImage.objects.get(task=tasks[1])
        assert again.prefill(dunes, "retry", usable={"sandbox": None}).initial["prompt"] == (
            "Dunes"
        )

    def test_a_banned_term_of_the_brand_refuses_the_batch_naming_line_and_term(
        self, campaign
    ) -> None:
        campaign.brand = Brand.objects.create(name="Meadow", banned_terms="Nike\n耐克")
        campaign.save()
        with pytest.raises(services.PromptRefused, match=r"^Line 3: .*耐克") as refused:
            services.request_batch(
                campaign=campaign, lines=lines(("Kite", "1:1", 1), ("穿耐克的跑者", "1:1", 1))
            )
        assert refused.value.term == "耐克"
        assert nothing_created()

    def test_over_budget_makes_nothing_at_all(self, campaign, enqueued) -> None:
        # 26 images at $0.04 = $1.04 > $1.00: the first lines would fit, none is made.
        with pytest.raises(BudgetExceeded, match=r"cost \$1.04 but only \$1.00"):
            services.request_batch(
                campaign=campaign,
                lines=lines(("A", "1:1", 20), ("B", "1:1", 6)),
            )
        assert nothing_created()
        assert enqueued == []

    def test_spending_the_budget_exactly_is_allowed(self, campaign) -> None:
        tasks = services.request_batch(
            campaign=campaign, lines=lines(("A", "1:1", 20), ("B", "16:9", 5))
        )
        assert sum(t.num_images for t in tasks) == 25
        assert campaign.committed_spend() == Decimal("1.00")
        with pytest.raises(BudgetExceeded):
            services.request_batch(campaign=campaign, lines=lines(("C", "1:1", 1)))

    def test_the_whole_price_is_checked_once_under_the_lock(self, campaign, monkeypatch) -> None:
        seen: list[tuple[Any, ...]] = []
        check = services._check_spend

        def spy(locked: Campaign, cost: Decimal) -> None:
            seen.append((locked.pk, cost, transaction.get_connection().in_atomic_block))
            check(locked, cost)

        monkeypatch.setattr(services, "_check_spend", spy)
        services.request_batch(campaign=campaign, lines=lines(("A", "1:1", 3), ("B", "4:3", 2)))
        services.request_images(campaign=campaign, prompt="Single", count=2)
        assert seen == [
            (campaign.pk, Decimal("0.20"), True),
            (campaign.pk, Decimal("0.08"), True),
        ]

    def test_a_line_refused_makes_nothing_and_is_named(self, campaign) -> None:
        with pytest.raises(GenerationRequestError, match=r"^Line 3: Write a prompt"):
            services.request_batch(campaign=campaign, lines=lines(("A", "1:1", 1), (" ", "1:1", 1)))
        with pytest.raises(GenerationRequestError, match=r"^Line 2: Ask for between 1 and 100"):
            services.request_batch(campaign=campaign, lines=lines(("A", "1:1", 101)))
        assert nothing_created()

    def test_a_ratio_the_provider_lacks_is_refused_naming_it(self, campaign, settings) -> None:
        config = imagen_settings()
        config["PROVIDERS"]["square"] = {
            "BACKEND": f"{__name__}.SquareOnlyProvider",
            "OPTIONS": {"API_KEY": "k", "BASE_URL": "https://api.wavespeed.ai"},
        }
        settings.IMAGEN_ASSETS = config
        with pytest.raises(
            GenerationRequestError,
            match=r"^Line 3: Square Only does not offer the aspect ratio 16:9\.",
        ):
            services.request_batch(
                campaign=campaign,
                lines=lines(("A", "1:1", 1), ("A", "16:9", 1)),
                provider="square",
            )
        assert nothing_created()

    def test_a_negative_prompt_the_provider_refuses_names_the_line(self, campaign) -> None:
        with pytest.raises(GenerationRequestError, match=r"^Line 2: Wave does not accept"):
            services.request_batch(
                campaign=campaign,
                lines=[ImageLine(prompt="A", negative_prompt="text", line=2)],
                provider="wave",
            )

    def test_the_batch_limit_is_its_own_setting(self, campaign, settings) -> None:
        settings.IMAGEN_ASSETS = imagen_settings(MAX_IMAGES_PER_BATCH=10)
        with pytest.raises(GenerationRequestError, match="asks for 11 images; at most 10"):
            services.request_batch(campaign=campaign, lines=lines(("A", "1:1", 6), ("B", "1:1", 5)))
        assert nothing_created()
        # A single request keeps MAX_IMAGES_PER_REQUEST (100 here).
        assert services.request_images(campaign=campaign, prompt="A", count=12)

    def test_a_closed_campaign_makes_nothing(self, campaign) -> None:
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.ARCHIVED)
        with pytest.raises(GenerationRequestError):
            services.request_batch(campaign=campaign, lines=lines(("A", "1:1", 1)))
        assert nothing_created()


class AltTextTests:
    def test_drafted_from_the_marketers_prompt_without_the_brand(self, campaign) -> None:
        services.request_images(campaign=campaign, prompt="a red bicycle by the sea", count=2)
        assert set(GeneratedImage.objects.values_list("alt_text", flat=True)) == {
            "A red bicycle by the sea"
        }

    def test_a_line_may_bring_its_own(self, campaign) -> None:
        services.request_batch(
            campaign=campaign,
            lines=[
                ImageLine(prompt="kite", alt_text="A yellow kite", line=2),
                ImageLine(prompt="春天的樱花", line=3),
            ],
        )
        assert sorted(GeneratedImage.objects.values_list("alt_text", flat=True)) == [
            "A yellow kite",
            "春天的樱花",
        ]

    def test_editing_an_approved_images_alt_text_keeps_it_approved(self, campaign) -> None:
        [task] = services.request_images(campaign=campaign, prompt="kite")
        image = task.images.get()
        GeneratedImage.objects.filter(pk=image.pk).update(
            status=ImageStatus.SUCCEEDED, review_status=ReviewStatus.APPROVED
        )
        editor = get_user_model().objects.create_user("marta")
        editor.user_permissions.add(Permission.objects.get(codename="generate_images"))
        editor = get_user_model().objects.get(pk=editor.pk)

        services.set_alt_text(image.pk, "  A yellow kite\nover dunes ", user=editor)

        image.refresh_from_db()
        assert image.alt_text == "A yellow kite over dunes"
        assert image.review_status == ReviewStatus.APPROVED
        assert image.status == ImageStatus.SUCCEEDED
        row = Activity.objects.get(verb=Activity.Verb.ALT_TEXT_CHANGED)
        assert (row.image_id, row.actor_label, row.note) == (
            image.pk,
            "marta",
            "A yellow kite over dunes",
        )

    def test_empty_or_unpermitted_edits_are_refused(self, campaign) -> None:
        [task] = services.request_images(campaign=campaign, prompt="kite")
        image = task.images.get()
        nobody = get_user_model().objects.create_user("nobody")
        with pytest.raises(services.ReviewError, match="may not edit"):
            services.set_alt_text(image.pk, "A kite", user=nobody)
        admin = get_user_model().objects.create_superuser("root")
        with pytest.raises(services.ReviewError, match="Write the alt text"):
            services.set_alt_text(image.pk, "   ", user=admin)
        image.refresh_from_db()
        assert image.alt_text == "Kite"

    def test_rows_saved_whole_get_a_draft_too(self, campaign) -> None:
        [task] = services.request_images(campaign=campaign, prompt="harbour at night")
        extra = GeneratedImage(task=task, campaign=campaign, index=5)
        extra.save()
        assert extra.alt_text == "Harbour at night"
