"""Image files are served by permission-checked views, never by a public storage URL
(docs/workflow.md, "Access to files"); check W005 warns when the storage is public."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.test import Client
from unit_helpers import image_bytes, make_campaign, make_task

from campaigns.settings import imagen_assets_from_env, storages_from_env
from imagen_assets import files
from imagen_assets.checks import check_originals_private
from imagen_assets.models import GeneratedImage
from imagen_assets.status import ReviewStatus

pytestmark = pytest.mark.django_db

ORIGINAL = image_bytes("PNG", (64, 48))
THUMB = image_bytes("JPEG", (32, 24))


def user(name: str, *codenames: str, group: Group | None = None) -> User:
    person = User.objects.create_user(name, password="pw")
    person.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    if group is not None:
        person.groups.add(group)
    return person


def client_for(person: User | None) -> Client:
    client = Client()
    if person is not None:
        client.force_login(person)
    return client


@pytest.fixture
def image() -> GeneratedImage:
    campaign = make_campaign()
    task = make_task(campaign, status="succeeded", image_status="succeeded")
    image = task.images.get()
    image.file.save("orig.png", ContentFile(ORIGINAL), save=False)
    image.thumbnail.save("thumb.jpg", ContentFile(THUMB), save=False)
    image.width, image.height = 64, 48  # as ingest records them
    image.save()
    assert image.review_status == ReviewStatus.PENDING
    return image


def original(image: GeneratedImage) -> str:
    return f"/imagen/original/{image.pk}/"


def thumbnail(image: GeneratedImage) -> str:
    return f"/imagen/thumbnail/{image.pk}/"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


class OriginalTests:
    def test_a_reviewer_gets_the_bytes_of_an_unapproved_original(self, image):
        reviewer = user("rita", "approve_generatedimage")

        response = client_for(reviewer).get(original(image))

        assert response.status_code == 200
        assert body(response) == ORIGINAL
        assert response["Content-Type"] == "image/png"
        assert "private" in response["Cache-Control"]

    def test_a_reviewer_with_only_the_reject_permission_may_too(self, image):
        response = client_for(user("rex", "reject_generatedimage")).get(original(image))

        assert response.status_code == 200

    def test_a_viewer_may_not_open_an_unapproved_original(self, image):
        response = client_for(user("vic", "view_generatedimage")).get(original(image))

        assert response.status_code == 403

    def test_a_viewer_may_open_it_once_approved(self, image):
        GeneratedImage.objects.filter(pk=image.pk).update(review_status=ReviewStatus.APPROVED)

        response = client_for(user("vic", "view_generatedimage")).get(original(image))

        assert response.status_code == 200
        assert body(response) == ORIGINAL

    def test_a_reviewer_outside_the_campaigns_reviewer_group_may_not(self, image):
        group = Group.objects.create(name="brand")
        image.campaign.reviewer_group = group
        image.campaign.save()
        outsider = user("olga", "approve_generatedimage", "view_generatedimage")

        assert client_for(outsider).get(original(image)).status_code == 403
        member = user("mia", "approve_generatedimage", group=group)
        assert client_for(member).get(original(image)).status_code == 200

    def test_an_anonymous_visitor_is_sent_to_log_in(self, image):
        response = client_for(None).get(original(image))

        assert response.status_code == 302
        assert "login" in response["Location"]

    def test_an_inactive_reviewer_may_not(self, image):
        reviewer = user("rita", "approve_generatedimage")
        reviewer.is_active = False
        reviewer.save()

        assert not files.may_open_original(reviewer, image)

    def test_unknown_image_and_missing_file_are_404(self, image):
        reviewer = user("rita", "approve_generatedimage")
        client = client_for(reviewer)
        assert client.get(f"/imagen/original/{image.pk + 100}/").status_code == 404
        storages["default"].delete(image.file.name)

        assert client.get(original(image)).status_code == 404

    def test_only_safe_methods(self, image):
        reviewer = user("rita", "approve_generatedimage")

        assert client_for(reviewer).post(original(image)).status_code == 405


class ThumbnailTests:
    def test_a_viewer_gets_the_thumbnail_of_any_image(self, image):
        response = client_for(user("vic", "view_generatedimage")).get(thumbnail(image))

        assert response.status_code == 200
        assert body(response) == THUMB
        assert response["Content-Type"] == "image/jpeg"
        assert "max-age=3600" in response["Cache-Control"]

    def test_without_view_permission_403(self, image):
        assert client_for(user("nobody")).get(thumbnail(image)).status_code == 403

    def test_an_image_without_a_thumbnail_is_404(self, image):
        GeneratedImage.objects.filter(pk=image.pk).update(thumbnail="")

        response = client_for(user("vic", "change_generatedimage")).get(thumbnail(image))

        assert response.status_code == 404


S3_OPTIONS = {
    "bucket_name": "private-images",
    "endpoint_url": "http://s3.test",
    "region_name": "us-east-1",
    "access_key": "AKIATEST",
    "secret_key": "secret",
}


def use_s3(settings: Any, **options: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "imagen": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**S3_OPTIONS, **options},
        },
    }
    settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "imagen"}


class SignedRedirectTests:
    def test_a_signing_storage_gets_a_redirect_to_a_url_valid_a_minute(self, image, settings):
        use_s3(settings)  # signing a URL is local: nothing is sent to s3.test
        reviewer = user("rita", "approve_generatedimage")

        response = client_for(reviewer).get(original(image))

        assert response.status_code == 302
        location = urlsplit(response["Location"])
        assert location.netloc == "s3.test"
        assert location.path == f"/private-images/{image.file.name}"
        query = parse_qs(location.query)
        assert "Signature" in query
        (expires,) = query["Expires"]  # boto3's default signature: an absolute expiry
        assert abs(int(expires) - (time.time() + files.SIGNED_URL_SECONDS)) < 5
        assert "max-age=30" in response["Cache-Control"]

    def test_the_permission_is_checked_before_any_redirect(self, image, settings):
        use_s3(settings)

        response = client_for(user("vic", "view_generatedimage")).get(original(image))

        assert response.status_code == 403


class PublicStorageCheckTests:
    def ids(self) -> list[str]:
        return [message.id for message in check_originals_private()]

    def test_a_filesystem_storage_under_media_root_warns(self, settings):
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "default"}

        assert self.ids() == ["imagen_assets.W005"]

    def test_a_filesystem_storage_outside_media_root_does_not(self, settings, tmp_path):
        settings.STORAGES = {
            **settings.STORAGES,
            "private": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path / "private")},
            },
        }
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "private"}

        assert self.ids() == []

    def test_s3_without_querystring_auth_warns(self, settings):
        use_s3(settings, querystring_auth=False)

        messages = check_originals_private()

        assert [m.id for m in messages] == ["imagen_assets.W005"]
        assert "querystring_auth" in messages[0].msg

    def test_s3_behind_an_unsigned_custom_domain_warns(self, settings):
        use_s3(settings, custom_domain="cdn.example.com")

        assert self.ids() == ["imagen_assets.W005"]

    def test_s3_with_signed_urls_does_not(self, settings):
        use_s3(settings)

        assert self.ids() == []

    @pytest.mark.parametrize(
        "env",
        [
            {},
            {
                "IMAGEN_STORAGE": "s3",
                **{"AWS_STORAGE_BUCKET_NAME": "b", "AWS_S3_ENDPOINT_URL": "http://s3.test"},
            },
        ],
    )
    def test_the_example_site_keeps_its_images_private(self, settings, env):
        settings.STORAGES = storages_from_env(env)
        settings.IMAGEN_ASSETS = imagen_assets_from_env(env)

        assert self.ids() == []

    def test_the_check_is_registered_with_django(self, settings):
        from django.core import checks

        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "default"}

        assert "imagen_assets.W005" in [m.id for m in checks.run_checks()]


class FieldStorageTests:
    def test_the_image_fields_follow_a_change_of_storage_settings(self, settings, tmp_path):
        # Django calls a field's storage callable once; storage.py keeps it in step.
        settings.STORAGES = {
            **settings.STORAGES,
            "private": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path / "private")},
            },
        }
        settings.IMAGEN_ASSETS = {**settings.IMAGEN_ASSETS, "STORAGE": "private"}

        for name in ("file", "thumbnail"):
            field = GeneratedImage._meta.get_field(name)
            assert field.storage.location == str(tmp_path / "private")
