"""Alt text in the export's manifests, and the data migration that drafts it for images
made before it existed."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from test_exports import stored_image
from unit_helpers import make_campaign

from imagen_assets import exports, review, services
from imagen_assets.activity import Actor
from imagen_assets.status import ReviewStatus

BEFORE = [("imagen_assets", "0012_brand_kit")]
AFTER = [("imagen_assets", "0013_alt_text")]


@pytest.mark.django_db
def test_the_manifests_carry_the_edited_alt_text_of_an_approved_image() -> None:
    campaign = make_campaign("autumn-sale")
    image = stored_image(campaign)
    assert image.alt_text == "A red bicycle, seed 7"  # drafted when the row was saved
    reviewer = get_user_model().objects.create_user("rita")
    reviewer.user_permissions.set(Permission.objects.filter(codename="approve_generatedimage"))
    review.decide(image.pk, "approve", Actor.of(get_user_model().objects.get(pk=reviewer.pk)))
    admin = get_user_model().objects.create_superuser("root")
    services.set_alt_text(image.pk, "A red bicycle leaning on a sea wall", user=admin)
    image.refresh_from_db()
    assert image.review_status == ReviewStatus.APPROVED

    buffer = io.BytesIO()
    exports.write_zip(campaign, exports.exportable_images(campaign), buffer)
    with zipfile.ZipFile(buffer) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        table = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["alt_text"] for row in manifest["images"]] == [
        "A red bicycle leaning on a sea wall"
    ]
    assert [row["alt_text"] for row in table] == ["A red bicycle leaning on a sea wall"]
    assert list(table[0]).index("alt_text") == list(table[0]).index("image_id") + 1


def test_old_images_get_a_draft_from_their_prompt(migrate: Any) -> None:
    old = migrate(BEFORE)
    Campaign = old.get_model("imagen_assets", "Campaign")
    Request = old.get_model("imagen_assets", "GenerationRequest")
    Task = old.get_model("imagen_assets", "GenerationTask")
    Image = old.get_model("imagen_assets", "GeneratedImage")
    campaign = Campaign.objects.create(
        name="Old", slug="old", brand_prompt="Pastel palette, soft light."
    )
    bare = Task.objects.create(
        campaign=campaign,
        provider="wavespeed",
        model="m",
        prompt="a lighthouse at dusk\n\nPastel palette, soft light.",
        aspect_ratio="1:1",
        num_images=2,
    )
    asked = Request.objects.create(campaign=campaign, prompt="春天的樱花", count=1)
    with_request = Task.objects.create(
        campaign=campaign,
        request=asked,
        provider="wavespeed",
        model="m",
        prompt="春天的樱花\n\nPastel palette, soft light.",
        aspect_ratio="1:1",
        num_images=1,
    )
    for task, index in ((bare, 0), (bare, 1), (with_request, 0)):
        Image.objects.create(task=task, campaign=campaign, index=index)

    new = migrate(AFTER)

    rows = new.get_model("imagen_assets", "GeneratedImage").objects.order_by("pk")
    assert [row.alt_text for row in rows] == [
        "A lighthouse at dusk",
        "A lighthouse at dusk",
        "春天的樱花",
    ]


def test_tasks_of_one_line_requests_get_their_prompt_as_written(migrate: Any) -> None:
    old = migrate([("imagen_assets", "0013_alt_text")])
    Campaign = old.get_model("imagen_assets", "Campaign")
    Request = old.get_model("imagen_assets", "GenerationRequest")
    Task = old.get_model("imagen_assets", "GenerationTask")
    campaign = Campaign.objects.create(name="Old", slug="old", brand_prompt="Pastel.")

    def task(request: Any) -> Any:
        return Task.objects.create(
            campaign=campaign,
            request=request,
            provider="sandbox",
            model="m",
            prompt="whatever\n\nPastel.",
            aspect_ratio="1:1",
            num_images=1,
        )

    single = task(Request.objects.create(campaign=campaign, prompt="A kite", count=1))
    batch = task(
        Request.objects.create(campaign=campaign, prompt="A kite\nDunes", count=2, origin="batch")
    )
    new = migrate([("imagen_assets", "0014_prompt_as_written_and_batch_key")])
    Task = new.get_model("imagen_assets", "GenerationTask")
    assert Task.objects.get(pk=single.pk).written_prompt == "A kite"
    # A batch's request holds every line: its tasks are not given the whole list.
    assert Task.objects.get(pk=batch.pk).written_prompt == ""
