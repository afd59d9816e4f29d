"""What users can do: ask for images (validation, budget, on-commit queueing), review them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone
from unit_helpers import make_campaign, make_task

from imagen_assets import jobs, services
from imagen_assets.models import Campaign, GeneratedImage, GenerationTask
from imagen_assets.services import BudgetExceeded, GenerationRequestError, ReviewError
from imagen_assets.status import Decision

pytestmark = pytest.mark.django_db


def ask(campaign: Campaign, **kwargs) -> list[GenerationTask]:
    kwargs.setdefault("prompt", "a red bicycle")
    return services.request_images(campaign=campaign, **kwargs)


def nothing_created() -> bool:
    return not GenerationTask.objects.exists() and not GeneratedImage.objects.exists()


@pytest.fixture
def user():
    """A reviewer: may approve and reject (and did not ask for the images under review)."""
    reviewer = get_user_model().objects.create_user("reviewer")  # no password: no hashing
    reviewer.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="imagen_assets",
            codename__in=["approve_generatedimage", "reject_generatedimage"],
        )
    )
    return reviewer


@pytest.fixture
def campaign() -> Campaign:
    return make_campaign(brand_prompt="  Pastel palette, soft light.  ")


class RequestImagesTests:
    def test_splits_the_count_into_tasks_of_at_most_four(self, campaign):
        tasks = ask(campaign, count=10)

        assert [task.num_images for task in tasks] == [4, 4, 2]
        assert GeneratedImage.objects.count() == 10
        for task in tasks:
            indexes = sorted(task.images.values_list("index", flat=True))
            assert indexes == list(range(task.num_images))

    def test_records_the_final_prompt_with_the_brand_prompt(self, campaign):
        (task,) = ask(campaign, prompt="  a red bicycle ")

        task.refresh_from_db()
        assert task.prompt == "a red bicycle\n\nPastel palette, soft light."
        assert task.request_body["prompt"] == task.prompt

    def test_gives_each_task_its_own_seed(self, campaign):
        tasks = ask(campaign, count=9, seed=41)

        assert [t.seed for t in tasks] == [41, 42, 43]
        assert [t.request_body["seed"] for t in tasks] == [41, 42, 43]

    def test_seeds_wrap_at_the_top_of_the_range(self, campaign):
        tasks = ask(campaign, count=8, seed=services.SEED_MAX)

        assert [t.seed for t in tasks] == [services.SEED_MAX, 0]

    def test_without_a_seed_a_random_one_is_chosen_sent_and_recorded(self, campaign):
        batches = [ask(campaign, count=8) for _ in range(3)]

        for first, second in batches:
            assert 0 <= first.seed <= services.SEED_MAX
            assert second.seed == (first.seed + 1) % (services.SEED_MAX + 1)
            assert (first.request_body["seed"], second.request_body["seed"]) == (
                first.seed,
                second.seed,
            )
        assert len({first.seed for first, _ in batches}) == 3  # odds of a clash: ~1e-9

    def test_records_estimated_cost_per_task(self, campaign):
        tasks = ask(campaign, count=5)

        assert [t.estimated_cost for t in tasks] == [Decimal("0.16"), Decimal("0.04")]

    def test_records_the_exact_request_body_provider_and_model(self, campaign):
        (task,) = ask(campaign, count=3, aspect_ratio="16:9", negative_prompt=" blur ")

        task.refresh_from_db()
        assert task.provider == "wavespeed"
        assert task.model == "wavespeed-ai/imagen4"
        assert task.negative_prompt == "blur"
        assert task.request_body == {
            "prompt": task.prompt,
            "negative_prompt": "blur",
            "aspect_ratio": "16:9",
            "num_images": 3,
            "seed": task.seed,
        }

    def test_uses_the_campaigns_defaults(self):
        campaign = make_campaign(
            default_provider="wave", default_aspect_ratio="9:16", default_negative_prompt=""
        )

        (task,) = ask(campaign)

        assert task.provider == "wave"
        assert task.aspect_ratio == "9:16"
        assert task.request_body["seed"] == task.seed
        assert "callback_url" not in task.request_body

    def test_records_who_asked(self, campaign, user):
        (task,) = ask(campaign, user=user)

        assert task.requested_by == user

    def test_new_rows_are_queued_and_not_for_review_until_ready(self, campaign):
        (task,) = ask(campaign, count=2)

        assert task.status == "queued"
        assert set(task.images.values_list("status", "review_status")) == {("queued", "none")}


class RequestValidationTests:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"prompt": ""}, "Write a prompt"),
            ({"prompt": "   \n"}, "Write a prompt"),
            ({"count": 0}, "between 1 and 100"),
            ({"count": -3}, "between 1 and 100"),
            ({"count": 101}, "between 1 and 100"),
            ({"aspect_ratio": "3:2"}, "WaveSpeed AI does not offer the aspect ratio 3:2"),
            ({"provider": "wave", "negative_prompt": "blur"}, "Wave does not accept a negative"),
            ({"seed": -1}, "seed must be between 0 and 2147483647"),
            ({"seed": 2**31}, "seed must be between 0 and 2147483647"),
            ({"provider": "nope"}, "No provider 'nope'"),
        ],
    )
    def test_refuses_with_a_readable_message_and_creates_nothing(
        self, campaign, enqueued, kwargs, message, django_capture_on_commit_callbacks
    ):
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(GenerationRequestError, match=message),
        ):
            ask(campaign, **kwargs)

        assert nothing_created()
        assert enqueued == []

    def test_the_limit_follows_the_setting(self, campaign, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "MAX_IMAGES_PER_REQUEST": 5}

        with pytest.raises(GenerationRequestError, match="between 1 and 5"):
            ask(campaign, count=6)

    def test_refuses_a_provider_without_its_api_key(self, campaign, settings):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["wave"]["OPTIONS"]["API_KEY"] = ""
        settings.IMAGEN_ASSETS = config

        message = "Provider wave is not configured: set API_KEY"
        with pytest.raises(GenerationRequestError, match=message):
            ask(campaign, provider="wave")

        assert nothing_created()

    def test_refuses_a_provider_with_a_broken_backend(self, campaign, settings):
        config = settings.IMAGEN_ASSETS
        config["PROVIDERS"]["broken"] = {"BACKEND": "imagen_assets.providers.nothing.Here"}
        settings.IMAGEN_ASSETS = config

        with pytest.raises(GenerationRequestError, match="cannot be imported"):
            ask(campaign, provider="broken")

        assert nothing_created()


class BudgetTests:
    def test_refuses_a_request_over_budget_and_creates_nothing(self, enqueued):
        campaign = make_campaign(budget=Decimal("0.10"))

        with pytest.raises(BudgetExceeded, match=r"cost \$0.12 but only \$0.10 of the \$0.10"):
            ask(campaign, count=3)

        assert nothing_created()
        assert enqueued == []

    def test_accepts_a_request_that_spends_the_budget_exactly(self):
        campaign = make_campaign(budget=Decimal("0.12"))

        assert len(ask(campaign, count=3)) == 1

    def test_committed_spend_counts_finished_cost_and_open_estimates(self):
        campaign = make_campaign(budget=Decimal("1.00"))
        make_task(campaign, status="succeeded", cost=Decimal("0.30"), estimated_cost="0.99")
        make_task(campaign, status="queued", estimated_cost="0.20")
        make_task(campaign, status="processing", estimated_cost="0.10")
        make_task(campaign, status="submitted", estimated_cost="0.05")
        make_task(campaign, status="failed", cost=Decimal(0), estimated_cost="0.50")
        make_task(campaign, status="cancelled", estimated_cost="0.50")

        assert campaign.committed_spend() == Decimal("0.65")

    def test_committed_spend_limits_the_next_request(self):
        campaign = make_campaign(budget=Decimal("0.50"))
        make_task(campaign, status="succeeded", cost=Decimal("0.30"))
        make_task(campaign, status="processing", estimated_cost="0.12")

        with pytest.raises(BudgetExceeded, match=r"only \$0.08 of the \$0.50"):
            ask(campaign, count=3)
        assert len(ask(campaign, count=2)) == 1

    def test_left_is_never_shown_negative(self):
        campaign = make_campaign(budget=Decimal("0.10"))
        make_task(campaign, status="succeeded", cost=Decimal("0.30"))

        with pytest.raises(BudgetExceeded, match=r"only \$0.00 of"):
            ask(campaign)

    def test_no_budget_means_no_limit(self):
        campaign = make_campaign(budget=None)
        make_task(campaign, status="succeeded", cost=Decimal("1000"))

        assert len(ask(campaign, count=100)) == 25


class QueueingTests:
    def test_queues_one_submit_per_task_only_after_commit(
        self, campaign, enqueued, django_capture_on_commit_callbacks, settings
    ):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "JOB_THREADS": 8}
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            tasks = ask(campaign, count=6)
            assert enqueued == []

        # One to queue the submits; the activity log's (for notifications) queues nothing
        # for a request.
        for callback in callbacks:
            callback()
        # Together: JOB_THREADS (8) to a job, sent from threads of it.
        assert [(call.func, call.args, call.delay) for call in enqueued] == [
            (jobs.submit_many, ([task.pk for task in tasks],), None)
        ]

    def test_queues_nothing_when_the_surrounding_transaction_rolls_back(
        self, campaign, enqueued, django_capture_on_commit_callbacks
    ):
        class Abort(Exception):
            pass

        with (
            django_capture_on_commit_callbacks(execute=True) as callbacks,
            pytest.raises(Abort),
            transaction.atomic(),
        ):
            ask(campaign, count=2)
            raise Abort

        assert callbacks == []
        assert enqueued == []
        assert nothing_created()


class ReviewTests:
    @pytest.fixture
    def image(self, campaign) -> GeneratedImage:
        task = make_task(campaign, status="succeeded", image_status="succeeded")
        return task.images.get()

    def test_approve_records_who_when_and_why(self, image, user):
        before = timezone.now()

        approved = services.approve_image(image.pk, user=user, note=" on brand ")

        image.refresh_from_db()
        assert approved.pk == image.pk
        assert image.review_status == "approved"
        assert image.reviewed_by == user
        assert image.reviewed_at >= before
        assert image.review_note == "on brand"

    def test_reject_records_who_when_and_why(self, image, user):
        services.reject_image(image.pk, user=user, note="wrong colours")

        image.refresh_from_db()
        assert image.review_status == "rejected"
        assert image.reviewed_by == user
        assert image.reviewed_at is not None
        assert image.review_note == "wrong colours"

    @pytest.mark.parametrize("note", ["", "   ", None])
    def test_reject_requires_a_note(self, image, user, note):
        with pytest.raises(ReviewError, match="Say why"):
            services.reject_image(image.pk, user=user, note=note)

        image.refresh_from_db()
        assert image.review_status == "pending"
        assert not image.decisions.exists()

    @pytest.mark.parametrize("status", ["queued", "processing", "failed", "filtered", "cancelled"])
    def test_refuses_to_review_an_image_that_is_not_ready(self, campaign, user, status):
        image = make_task(campaign, image_status=status).images.get()

        with pytest.raises(ReviewError, match="not ready"):
            services.approve_image(image.pk, user=user)
        with pytest.raises(ReviewError, match="not ready"):
            services.reject_image(image.pk, user=user, note="no")

        image.refresh_from_db()
        assert image.review_status == "none"  # never pending review: it is not reviewable
        assert image.reviewed_by is None
        assert not image.decisions.exists()

    def test_review_many_reports_the_unready_ones(self, campaign, image, user):
        unready = make_task(campaign).images.get()

        done, errors = services.review_many([image.pk, unready.pk], Decision.APPROVE, user=user)

        assert [i.pk for i in done] == [image.pk]
        assert len(errors) == 1
        assert f"#{unready.pk}" in errors[0]

    def test_approved_images_are_only_the_approved_ones(self, campaign, user):
        task = make_task(campaign, num_images=4, status="succeeded", image_status="succeeded")
        first, second, third, _ = task.images.order_by("index")
        services.approve_image(first.pk, user=user)
        services.approve_image(second.pk, user=user)
        services.reject_image(third.pk, user=user, note="off brand")
        other = make_campaign("other")
        other_image = make_task(other, status="succeeded", image_status="succeeded").images.get()
        services.approve_image(other_image.pk, user=user)

        assert set(campaign.approved_images()) == {first, second}


class EnqueueSubmitsTests:
    def test_a_refused_enqueue_stops_the_rest_so_a_stalled_redis_costs_one_timeout(
        self, monkeypatch, caplog, settings
    ):
        # Q10: each refusal can take the full socket timeout; the reconciler queues the rest.
        from imagen_assets import queueing

        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "JOB_THREADS": 1}
        asked = []

        def refused(func, *args, **kwargs):
            asked.append(args)
            return False

        monkeypatch.setattr(queueing, "enqueue", refused)

        services.enqueue_submits([11, 12, 13], "wavespeed")

        assert asked == [([11],)]
        assert "Could not queue every submit; the reconciler will queue the rest." in caplog.text

    def test_every_task_is_queued_while_redis_takes_them(self, enqueued, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "JOB_THREADS": 2}
        services.enqueue_submits([11, 12, 13], "wavespeed")

        assert [(c.name, c.args) for c in enqueued] == [
            ("submit_many", ([11, 12],)),
            ("submit_many", ([13],)),
        ]
