"""Export of the approved set: the zip's contents, the service's refusals, the job, the
campaign page's exports and download, and ``manage.py imagen_export``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from unit_helpers import image_bytes, make_campaign

from imagen_assets import exports, review, signals
from imagen_assets.activity import Actor
from imagen_assets.models import Activity, Campaign, Export, GeneratedImage, GenerationTask
from imagen_assets.review import ReviewError
from imagen_assets.storage import image_storage

pytestmark = pytest.mark.django_db

REVIEW_PERMS = ["approve_generatedimage", "reject_generatedimage", "revoke_generatedimage"]


def make_user(username: str, *codenames: str, staff: bool = False) -> Any:
    user = get_user_model().objects.create_user(username, is_staff=staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="imagen_assets", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


def stored_image(
    campaign: Campaign, *, fmt: str = "JPEG", ratio: str = "16:9", seed: int = 7
) -> GeneratedImage:
    """A ready image whose file is really in storage, with its true size and SHA-256."""
    task = GenerationTask.objects.create(
        campaign=campaign,
        provider="wavespeed",
        model="wavespeed-ai/imagen4",
        prompt=f"a red bicycle, seed {seed}",
        aspect_ratio=ratio,
        num_images=1,
        seed=seed,
        status="succeeded",
    )
    data = image_bytes(fmt, (64, 36))
    image = GeneratedImage(task=task, campaign=campaign, index=0, status="succeeded")
    extension = {"JPEG": "jpg", "PNG": "png"}[fmt]
    image.file.save(f"{task.pk}-0-abc.{extension}", ContentFile(data), save=False)
    image.width, image.height = 64, 36  # as ingest records them (else read on every load)
    image.bytes = len(data)
    image.sha256 = hashlib.sha256(data).hexdigest()
    image.content_type = f"image/{fmt.lower()}"
    image.save()
    return image


@pytest.fixture
def campaign() -> Campaign:
    return make_campaign("autumn-sale")


@pytest.fixture
def reviewer() -> Any:
    return make_user("rita", *REVIEW_PERMS)


@pytest.fixture
def exporter() -> Any:
    return make_user("ed", "export_campaign", "view_campaign", "change_campaign", staff=True)


@pytest.fixture
def images(campaign: Campaign, reviewer: Any) -> dict[str, GeneratedImage]:
    """Two approved (a JPEG and a PNG), one rejected, one pending, one failed."""
    made = {
        "jpeg": stored_image(campaign, ratio="16:9", seed=1),
        "png": stored_image(campaign, fmt="PNG", ratio="3:4", seed=2),
        "rejected": stored_image(campaign, seed=3),
        "pending": stored_image(campaign, seed=4),
    }
    actor = Actor.of(reviewer)
    review.decide(made["jpeg"].pk, "approve", actor, note="on brand")
    review.decide(made["png"].pk, "approve", actor)
    review.decide(made["rejected"].pk, "reject", actor, note="off brand")
    task = GenerationTask.objects.create(
        campaign=campaign,
        provider="wavespeed",
        model="m",
        prompt="p",
        aspect_ratio="1:1",
        num_images=1,
        status="failed",
    )
    GeneratedImage.objects.create(task=task, campaign=campaign, index=0, status="failed")
    for key, image in made.items():
        made[key] = GeneratedImage.objects.select_related("task").get(pk=image.pk)
    return made


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def stored_bytes(image: GeneratedImage) -> bytes:
    with image_storage().open(image.file.name, "rb") as stream:
        return stream.read()


def zip_of(campaign: Campaign) -> dict[str, bytes]:
    buffer = io.BytesIO()
    exports.write_zip(campaign, exports.exportable_images(campaign), buffer)
    return read_zip(buffer.getvalue())


class ZipContentsTests:
    def test_holds_the_approved_originals_byte_for_byte_and_nothing_else(self, campaign, images):
        members = zip_of(campaign)

        jpeg, png = images["jpeg"], images["png"]
        assert sorted(members) == sorted(
            [
                f"autumn-sale-16x9-{jpeg.pk}.jpg",
                f"autumn-sale-3x4-{png.pk}.png",
                "manifest.csv",
                "manifest.json",
            ]
        )
        assert members[f"autumn-sale-16x9-{jpeg.pk}.jpg"] == stored_bytes(jpeg)
        assert members[f"autumn-sale-3x4-{png.pk}.png"] == stored_bytes(png)

    def test_the_manifests_describe_each_member_and_its_hash_matches(self, campaign, images):
        members = zip_of(campaign)

        manifest = json.loads(members["manifest.json"])
        assert manifest["campaign"] == {"slug": "autumn-sale", "name": "Autumn-Sale"}
        rows = manifest["images"]
        assert [row["image_id"] for row in rows] == [images["jpeg"].pk, images["png"].pk]
        for row in rows:
            assert hashlib.sha256(members[row["file"]]).hexdigest() == row["sha256"]
            assert ":" not in row["file"]
        jpeg = rows[0]
        assert jpeg["prompt"] == "a red bicycle, seed 1"
        assert jpeg["seed"] == 1
        assert jpeg["model"] == "wavespeed-ai/imagen4"
        assert jpeg["provider"] == "wavespeed"
        assert (jpeg["width"], jpeg["height"]) == (64, 36)
        assert jpeg["approved_by"] == ["rita"]
        assert jpeg["approved_at"] == images["jpeg"].reviewed_at.isoformat()

        table = list(csv.DictReader(io.StringIO(members["manifest.csv"].decode())))
        assert [r["file"] for r in table] == [r["file"] for r in rows]
        assert [r["sha256"] for r in table] == [r["sha256"] for r in rows]
        assert table[0]["approved_by"] == "rita"

    def test_approved_by_names_the_approvals_of_the_current_round_only(self, campaign):
        campaign.required_approvals = 2
        campaign.save()
        image = stored_image(campaign)
        first, second, third = (make_user(n, *REVIEW_PERMS) for n in ("ann", "bob", "cy"))
        review.decide(image.pk, "approve", Actor.of(first))
        review.decide(image.pk, "approve", Actor.of(second))
        review.revoke(image.pk, Actor.of(third), note="wrong logo")
        review.decide(image.pk, "approve", Actor.of(third))
        review.decide(image.pk, "approve", Actor.of(first))

        rows = json.loads(zip_of(campaign)["manifest.json"])["images"]

        assert [row["approved_by"] for row in rows] == [["cy", "ann"]]

    def test_names_never_hold_a_colon_or_a_slash_and_keep_the_extension(self, campaign, images):
        campaign.slug = "a:b/c"  # only a slug set past validation could, but still
        image = images["jpeg"]

        name = exports.member_name(campaign, image)

        assert name == f"a-b-c-16x9-{image.pk}.jpg"

    def test_a_file_that_does_not_match_its_hash_stops_the_export(self, campaign, images):
        GeneratedImage.objects.filter(pk=images["png"].pk).update(sha256="0" * 64)

        with pytest.raises(exports.ExportFailed, match=f"image #{images['png'].pk}.*SHA-256"):
            zip_of(campaign)

    def test_reads_each_file_in_chunks(self, campaign, images, monkeypatch):
        monkeypatch.setattr(exports, "CHUNK_SIZE", 100)
        reads: list[int] = []
        storage = image_storage()
        real_open = storage.open

        def counting_open(name: str, mode: str = "rb") -> Any:
            stream = real_open(name, mode)
            real_read = stream.file.read

            def read(size: int = -1) -> bytes:
                reads.append(size)
                return real_read(size)

            stream.file.read = read
            return stream

        monkeypatch.setattr(storage, "open", counting_open)
        monkeypatch.setattr(exports, "image_storage", lambda: storage)

        members = zip_of(campaign)

        assert reads and set(reads) == {100}  # never a whole-file read()
        monkeypatch.undo()
        name = exports.member_name(campaign, images["jpeg"])
        assert members[name] == stored_bytes(images["jpeg"])


class RequestExportTests:
    def test_queues_the_job_after_commit(
        self, campaign, images, exporter, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            export = exports.request_export(campaign.pk, Actor.of(exporter))
            assert enqueued == []

        assert export.status == Export.Status.QUEUED
        assert export.requested_by == exporter
        assert [(job.func, job.args) for job in enqueued] == [(exports.build_export, (export.pk,))]

    def test_a_second_request_while_one_is_queued_returns_it(
        self, campaign, images, exporter, enqueued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            first = exports.request_export(campaign.pk, Actor.of(exporter))
            second = exports.request_export(campaign.pk, Actor.of(exporter))

        assert first.pk == second.pk
        assert Export.objects.count() == 1

    def test_refused_without_the_export_permission(
        self, campaign, images, reviewer, enqueued, django_capture_on_commit_callbacks
    ):
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(ReviewError, match="rita may not download"),
        ):
            exports.request_export(campaign.pk, Actor.of(reviewer))

        assert not Export.objects.exists()
        assert enqueued == []

    def test_refused_when_nothing_is_approved(
        self, campaign, exporter, enqueued, django_capture_on_commit_callbacks
    ):
        stored_image(campaign)  # pending
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(ReviewError, match="has no approved image"),
        ):
            exports.request_export(campaign.pk, Actor.of(exporter))

        assert not Export.objects.exists()
        assert enqueued == []


def queued_export(campaign: Campaign, user: Any) -> Export:
    return Export.objects.create(campaign=campaign, requested_by=user)


class BuildExportTests:
    def test_writes_the_zip_to_storage_and_marks_the_export_ready(
        self, campaign, images, exporter, django_capture_on_commit_callbacks
    ):
        export = queued_export(campaign, exporter)
        received: list[Export] = []
        handler = lambda sender, export, **kw: received.append(export)  # noqa: E731
        signals.export_ready.connect(handler, sender=Export)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                assert exports.build_export(export.pk) == "ready"
        finally:
            signals.export_ready.disconnect(handler, sender=Export)

        export.refresh_from_db()
        assert export.status == Export.Status.READY
        assert re.fullmatch(
            rf"imagen/autumn-sale/exports/autumn-sale-approved-{export.pk}-[0-9a-f]{{8}}\.zip",
            export.file_name,
        )
        assert sorted(export.image_ids) == sorted([images["jpeg"].pk, images["png"].pk])
        assert export.finished_at is not None and not export.stale
        with image_storage().open(export.file_name, "rb") as stream:
            data = stream.read()
        assert export.bytes == len(data)
        assert read_zip(data) == zip_of(campaign) | {
            "manifest.json": read_zip(data)["manifest.json"]  # its time stamp differs
        }
        assert [e.pk for e in received] == [export.pk]
        [logged] = Activity.objects.filter(verb=Activity.Verb.EXPORTED)
        assert (logged.actor, logged.campaign_id) == (exporter, campaign.pk)

    def test_a_ready_export_is_not_built_again(self, campaign, images, exporter):
        export = queued_export(campaign, exporter)
        exports.build_export(export.pk)
        export.refresh_from_db()

        assert exports.build_export(export.pk) == "ready"

        again = Export.objects.get(pk=export.pk)
        assert (again.file_name, again.finished_at) == (export.file_name, export.finished_at)
        assert Activity.objects.filter(verb=Activity.Verb.EXPORTED).count() == 1
        assert image_storage().listdir("imagen/autumn-sale/exports")[1] == [
            Path(export.file_name).name
        ]

    def test_of_two_runs_at_once_the_first_to_finish_is_kept_and_the_other_deleted(
        self, campaign, images, exporter, monkeypatch, django_capture_on_commit_callbacks
    ):
        export = queued_export(campaign, exporter)
        real_write = exports.write_zip
        nested: list[str] = []

        def write_while_another_run_finishes(*args: Any) -> exports.Written:
            written = real_write(*args)
            if not nested:  # the second run starts and ends while the first writes
                nested.append("running")
                nested[0] = exports.build_export(export.pk)
            return written

        monkeypatch.setattr(exports, "write_zip", write_while_another_run_finishes)
        with django_capture_on_commit_callbacks(execute=True):
            assert exports.build_export(export.pk) == "ready"

        export.refresh_from_db()
        assert nested == ["ready"]
        folder = "imagen/autumn-sale/exports"
        assert image_storage().listdir(folder)[1] == [Path(export.file_name).name]
        assert Activity.objects.filter(verb=Activity.Verb.EXPORTED).count() == 1

    def test_a_hash_mismatch_fails_the_export_saying_why_and_stores_nothing(
        self, campaign, images, exporter
    ):
        GeneratedImage.objects.filter(pk=images["jpeg"].pk).update(sha256="f" * 64)
        export = queued_export(campaign, exporter)

        assert exports.build_export(export.pk) == "failed"

        export.refresh_from_db()
        assert export.status == Export.Status.FAILED
        assert f"image #{images['jpeg'].pk} does not match its recorded SHA-256" in (
            export.error_message
        )
        assert not image_storage().exists("imagen/autumn-sale/exports")
        assert not Activity.objects.filter(verb=Activity.Verb.EXPORTED).exists()

    def test_a_revoke_marks_the_exports_holding_the_image_stale(
        self, campaign, images, exporter, reviewer
    ):
        export = queued_export(campaign, exporter)
        exports.build_export(export.pk)
        other = Export.objects.create(
            campaign=campaign, status="ready", image_ids=[images["png"].pk]
        )

        review.revoke(images["jpeg"].pk, Actor.of(reviewer), note="expired licence")

        assert Export.objects.get(pk=export.pk).stale
        assert not Export.objects.get(pk=other.pk).stale

    def test_a_revoke_while_the_zip_is_written_leaves_it_stale(
        self, campaign, images, exporter, reviewer, monkeypatch
    ):
        real_write = exports.write_zip

        def write_then_revoke(*args: Any) -> exports.Written:
            written = real_write(*args)
            review.revoke(images["png"].pk, Actor.of(reviewer), note="changed our mind")
            return written

        monkeypatch.setattr(exports, "write_zip", write_then_revoke)
        export = queued_export(campaign, exporter)

        assert exports.build_export(export.pk) == "ready"

        assert Export.objects.get(pk=export.pk).stale


class AdminExportsTests:
    def change_url(self, campaign: Campaign) -> str:
        return reverse("admin:imagen_assets_campaign_change", args=[campaign.pk])

    def test_the_campaign_page_offers_the_download_and_lists_exports(
        self, client, campaign, images, exporter
    ):
        export = queued_export(campaign, exporter)
        exports.build_export(export.pk)
        Export.objects.create(campaign=campaign, status="failed", error_message="disk full")
        client.force_login(exporter)

        page = client.get(self.change_url(campaign)).content.decode()

        assert "Download approved images" in page
        assert reverse("admin:imagen_assets_campaign_export", args=[campaign.pk]) in page
        download = reverse(
            "admin:imagen_assets_campaign_export_download", args=[campaign.pk, export.pk]
        )
        assert download in page
        assert "disk full" in page

    def test_without_the_export_permission_there_is_no_export_section(
        self, client, campaign, images
    ):
        viewer = make_user("vic", "view_campaign", "change_campaign", staff=True)
        client.force_login(viewer)

        page = client.get(self.change_url(campaign)).content.decode()

        assert "imagen-exports" not in page
        url = reverse("admin:imagen_assets_campaign_export", args=[campaign.pk])
        assert client.post(url).status_code == 403
        assert not Export.objects.exists()

    def test_posting_queues_an_export(
        self, client, campaign, images, exporter, enqueued, django_capture_on_commit_callbacks
    ):
        client.force_login(exporter)
        url = reverse("admin:imagen_assets_campaign_export", args=[campaign.pk])

        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, follow=True)

        [export] = Export.objects.all()
        assert [job.args for job in enqueued] == [(export.pk,)]
        assert "Building a zip of the approved images" in response.content.decode()
        assert client.get(url).status_code == 405

    def test_posting_without_approved_images_says_so(self, client, campaign, exporter, enqueued):
        client.force_login(exporter)
        url = reverse("admin:imagen_assets_campaign_export", args=[campaign.pk])

        response = client.post(url, follow=True)

        assert "has no approved image to download yet" in response.content.decode()
        assert not Export.objects.exists()

    def test_the_download_streams_the_stored_zip(self, client, campaign, images, exporter):
        export = queued_export(campaign, exporter)
        exports.build_export(export.pk)
        export.refresh_from_db()
        client.force_login(exporter)
        url = reverse("admin:imagen_assets_campaign_export_download", args=[campaign.pk, export.pk])

        response = client.get(url)

        assert response.status_code == 200
        assert response["Content-Type"] == "application/zip"
        assert f'filename="autumn-sale-approved-{export.pk}.zip"' in response["Content-Disposition"]
        with image_storage().open(export.file_name, "rb") as stream:
            assert b"".join(response.streaming_content) == stream.read()

    def test_no_download_of_another_campaigns_or_an_unfinished_export(
        self, client, campaign, images, exporter
    ):
        other = make_campaign("other")
        queued = queued_export(campaign, exporter)
        ready = queued_export(campaign, exporter)
        exports.build_export(ready.pk)
        client.force_login(exporter)

        def status(campaign_id: int, export_id: int) -> int:
            url = reverse(
                "admin:imagen_assets_campaign_export_download", args=[campaign_id, export_id]
            )
            return client.get(url).status_code

        assert status(campaign.pk, ready.pk) == 200
        assert status(other.pk, ready.pk) == 404
        assert status(campaign.pk, queued.pk) == 404
        client.force_login(make_user("vic", "view_campaign", staff=True))
        assert status(campaign.pk, ready.pk) == 403


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty folder for the command's zip (tmp_path also holds MEDIA_ROOT)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


class ExportCommandTests:
    def test_writes_the_same_zip_and_logs_it(self, campaign, images, exporter, out_dir):
        out = out_dir / "approved.zip"
        stdout = io.StringIO()

        call_command(
            "imagen_export",
            "autumn-sale",
            "--out",
            str(out),
            "--user",
            "ed",
            "--json",
            stdout=stdout,
        )

        result = json.loads(stdout.getvalue())
        assert result == {
            "ok": True,
            "campaign": "autumn-sale",
            "file": str(out),
            "images": 2,
            "bytes": out.stat().st_size,
        }
        members = read_zip(out.read_bytes())
        expected = zip_of(campaign)
        assert sorted(members) == sorted(expected)
        assert {k: v for k, v in members.items() if k != "manifest.json"} == {
            k: v for k, v in expected.items() if k != "manifest.json"
        }
        [logged] = Activity.objects.filter(verb=Activity.Verb.EXPORTED)
        assert logged.actor == exporter

    def test_nothing_approved_exits_1_and_writes_nothing(self, campaign, out_dir):
        stored_image(campaign)
        out = out_dir / "approved.zip"
        stdout = io.StringIO()

        with pytest.raises(CommandError, match="has no approved image") as raised:
            call_command("imagen_export", "autumn-sale", "--out", str(out), "--json", stdout=stdout)

        assert raised.value.returncode == 1
        assert json.loads(stdout.getvalue()) == {
            "ok": False,
            "error": "Autumn-Sale has no approved image to download yet.",
        }
        assert list(out_dir.iterdir()) == []

    def test_a_user_without_the_permission_is_refused(self, campaign, images, reviewer, out_dir):
        with pytest.raises(CommandError, match="rita may not download"):
            call_command(
                "imagen_export", "autumn-sale", "--out", str(out_dir / "a.zip"), "--user", "rita"
            )

        assert list(out_dir.iterdir()) == []

    def test_a_failed_export_leaves_no_partial_file(self, campaign, images, out_dir):
        GeneratedImage.objects.filter(pk=images["png"].pk).update(sha256="0" * 64)

        with pytest.raises(CommandError, match="SHA-256"):
            call_command("imagen_export", "autumn-sale", "--out", str(out_dir / "a.zip"))

        assert list(out_dir.iterdir()) == []
