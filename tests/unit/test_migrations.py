"""The review workflow's migration keeps what sites already had: decisions on record,
unready images not pending review."""

from __future__ import annotations

from typing import Any

BEFORE = [("imagen_assets", "0003_submit_attempt_and_next_poll")]
AFTER = [("imagen_assets", "0004_review_workflow")]


class ReviewWorkflowMigrationTests:
    def test_existing_reviews_go_on_record_and_unready_images_are_not_pending(
        self, migrate: Any
    ) -> None:
        old = migrate(BEFORE)
        User = old.get_model("auth", "User")
        Campaign = old.get_model("imagen_assets", "Campaign")
        Task = old.get_model("imagen_assets", "GenerationTask")
        Image = old.get_model("imagen_assets", "GeneratedImage")
        ann = User.objects.create(username="ann")
        campaign = Campaign.objects.create(name="C", slug="c")
        task = Task.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=3,
            status="succeeded",
        )
        approved = Image.objects.create(
            task=task,
            campaign=campaign,
            index=0,
            status="succeeded",
            review_status="approved",
            reviewed_by=ann,
            review_note="good",
        )
        failed = Image.objects.create(
            task=task, campaign=campaign, index=1, status="failed", review_status="pending"
        )
        pending = Image.objects.create(
            task=task, campaign=campaign, index=2, status="succeeded", review_status="pending"
        )

        new = migrate(AFTER)
        Image = new.get_model("imagen_assets", "GeneratedImage")
        Decision = new.get_model("imagen_assets", "ReviewDecision")

        statuses = dict(Image.objects.values_list("pk", "review_status"))
        assert statuses == {approved.pk: "approved", failed.pk: "none", pending.pk: "pending"}
        assert list(
            Decision.objects.values_list("image_id", "round", "decision", "reviewer_label", "note")
        ) == [(approved.pk, 1, "approve", "ann", "good")]


class ServedHashMigrationTests:
    def test_files_stored_before_it_were_stored_as_served(self, migrate: Any) -> None:
        old = migrate([("imagen_assets", "0004_review_workflow")])
        Campaign = old.get_model("imagen_assets", "Campaign")
        Task = old.get_model("imagen_assets", "GenerationTask")
        Image = old.get_model("imagen_assets", "GeneratedImage")
        campaign = Campaign.objects.create(name="C", slug="c")
        task = Task.objects.create(
            campaign=campaign,
            provider="sandbox",
            model="m",
            prompt="p",
            aspect_ratio="1:1",
            num_images=2,
            status="succeeded",
        )
        stored = Image.objects.create(
            task=task, campaign=campaign, index=0, status="succeeded", sha256="ab" * 32
        )
        failed = Image.objects.create(task=task, campaign=campaign, index=1, status="failed")

        new = migrate([("imagen_assets", "0005_provider_file_hash_and_c2pa")])
        Image = new.get_model("imagen_assets", "GeneratedImage")

        rows = dict(Image.objects.values_list("pk", "served_sha256"))
        assert rows == {stored.pk: "ab" * 32, failed.pk: ""}
        assert not Image.objects.filter(provider_c2pa=True).exists()
