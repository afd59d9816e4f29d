"""services.review with a named Decision, the one path approve_image and reject_image take."""

from __future__ import annotations

import pytest

from imagen_assets import services
from imagen_assets.services import ReviewError
from imagen_assets.status import Decision

pytestmark = pytest.mark.django_db


class DecisionTests:
    def test_choices_have_labels(self) -> None:
        assert Decision.choices == [
            ("approve", "Approve"),
            ("reject", "Reject"),
            ("revoke", "Revoke"),
        ]


class ReviewTests:
    def test_records_the_decision_with_who_and_the_stripped_note(
        self, admin_user, campaign, make_image
    ) -> None:
        image = make_image(campaign)

        reviewed = services.review(image.pk, Decision.REJECT, user=admin_user, note=" bent ")

        image.refresh_from_db()
        assert reviewed.pk == image.pk
        assert (image.review_status, image.review_note) == ("rejected", "bent")
        assert image.reviewed_by == admin_user

    def test_accepts_the_stored_value_of_a_decision(self, admin_user, campaign, make_image):
        image = make_image(campaign)
        services.review(image.pk, "approve", user=admin_user)
        image.refresh_from_db()
        assert image.review_status == "approved"
        with pytest.raises(ValueError):
            services.review(image.pk, "maybe", user=admin_user)

    def test_a_rejection_needs_a_reason(self, admin_user, campaign, make_image) -> None:
        image = make_image(campaign)
        with pytest.raises(ReviewError, match="Say why"):
            services.review(image.pk, Decision.REJECT, user=admin_user, note="  ")
        image.refresh_from_db()
        assert image.review_status == "pending"

    def test_review_many_skips_what_cannot_be_reviewed_with_the_reason(
        self, admin_user, campaign, make_image
    ) -> None:
        ready = make_image(campaign)
        queued = make_image(campaign, status="queued")

        done, errors = services.review_many(
            [ready.pk, queued.pk], Decision.REJECT, user=admin_user, note="off brand"
        )

        assert [image.pk for image in done] == [ready.pk]
        assert len(errors) == 1
        assert f"Image #{queued.pk} is not ready" in errors[0]

    def test_review_many_without_a_reason_rejects_none(self, admin_user, campaign, make_image):
        images = [make_image(campaign), make_image(campaign)]

        done, errors = services.review_many(
            [image.pk for image in images], Decision.REJECT, user=admin_user
        )

        assert done == []
        assert errors == ["Say why the image is rejected."] * 2
