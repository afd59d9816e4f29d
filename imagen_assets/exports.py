"""Export: one zip of a campaign's approved originals with their manifest.

``docs/workflow.md``, "Export". Three ways in, one writer:

- :func:`request_export` (the admin's "Download approved images"): checks who asks and
  that something is approved, creates an :class:`~imagen_assets.models.Export` row and
  queues :func:`build_export` after commit;
- :func:`build_export`, the RQ job: writes the zip to the originals' storage, marks the
  export ready (or failed, saying why), logs ``exported`` for the requester and sends
  :data:`~imagen_assets.signals.export_ready` on commit;
- ``manage.py imagen_export``: the same zip, written synchronously to a local path.

All three write through :func:`write_zip`: the stored files byte for byte (streamed from
storage in chunks, each one's SHA-256 checked against the row while it streams), named
``{campaign}-{ratio}-{id}.{ext}``, plus ``manifest.csv`` and ``manifest.json``.

A revoke marks the exports holding the image stale (:func:`imagen_assets.review.revoke`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import mimetypes
import re
import secrets
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from imagen_assets import activity, conf, queueing, review, signals
from imagen_assets.activity import Actor, Verb
from imagen_assets.models import Campaign, Export, GeneratedImage, ReviewDecision
from imagen_assets.review import ReviewError
from imagen_assets.status import Decision
from imagen_assets.storage import image_storage

logger = logging.getLogger(__name__)

PERM_EXPORT = "imagen_assets.export_campaign"

#: Bytes read from storage at a time: one image is never held in memory whole.
CHUNK_SIZE = 1024 * 1024

MANIFEST_FIELDS = [
    "file",
    "image_id",
    "alt_text",
    "prompt",
    "seed",
    "model",
    "provider",
    "aspect_ratio",
    "width",
    "height",
    "bytes",
    "content_type",
    "sha256",
    "approved_by",
    "approved_at",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")


class ExportFailed(Exception):
    """The zip could not be built; the message says why, for the user."""


@dataclass(frozen=True)
class Written:
    """What :func:`write_zip` put in the zip."""

    image_ids: list[int]


# -- what goes in ----------------------------------------------------------------------------


def exportable_images(campaign: Campaign) -> list[GeneratedImage]:
    """The campaign's approved images, oldest first; :class:`ReviewError` when there is none."""
    images = list(campaign.images.approved().select_related("task").order_by("created_at", "pk"))
    if not images:
        raise _nothing_approved(campaign)
    return images


def _nothing_approved(campaign: Campaign) -> ReviewError:
    return ReviewError(
        _("%(campaign)s has no approved image to download yet.") % {"campaign": campaign}
    )


def member_name(campaign: Campaign, image: GeneratedImage) -> str:
    """``{campaign slug}-{ratio with "x"}-{image id}{stored extension}``, e.g.
    ``autumn-sale-16x9-42.jpg``: letters, digits, ``.``, ``-`` and ``_`` only (never a
    ``:`` or a ``/``), the stored file's own extension kept."""
    suffix = PurePosixPath(image.file.name or "").suffix.lower()
    if not _EXTENSION.fullmatch(suffix):
        suffix = mimetypes.guess_extension(image.content_type or "") or ""
    ratio = image.task.aspect_ratio.replace(":", "x")
    stem = _UNSAFE.sub("-", f"{campaign.slug}-{ratio}-{image.pk}").strip("-.")
    return f"{stem}{suffix}"


def _approvals(images: Sequence[GeneratedImage]) -> dict[int, list[ReviewDecision]]:
    """The approving decisions of each image's current round (one query)."""
    rounds = {image.pk: image.review_round for image in images}
    found: dict[int, list[ReviewDecision]] = {pk: [] for pk in rounds}
    decisions = ReviewDecision.objects.filter(
        image_id__in=list(rounds), decision=Decision.APPROVE
    ).order_by("created_at", "pk")
    for decision in decisions:
        if decision.round == rounds[decision.image_id]:
            found[decision.image_id].append(decision)
    return found


# -- the zip ---------------------------------------------------------------------------------


def write_zip(campaign: Campaign, images: Sequence[GeneratedImage], out: IO[bytes]) -> Written:
    """Write the zip of ``images`` (approved ones, as :func:`exportable_images` gives them)
    to ``out``, a writable binary file.

    Guarantees: each member is the stored file byte for byte, read from the images' storage
    ``CHUNK_SIZE`` bytes at a time; its SHA-256 is computed on the way and must equal the
    row's, else :class:`ExportFailed` is raised (``out`` then holds a partial zip the caller
    discards). ``manifest.csv`` and ``manifest.json`` follow, one row per image.
    """
    storage = image_storage()
    approvals = _approvals(images)
    rows: list[dict[str, Any]] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for image in images:
            name = member_name(campaign, image)
            if not image.file.name or not image.sha256:
                raise ExportFailed(
                    _("Image #%(id)d has no stored file with a known SHA-256 to export.")
                    % {"id": image.pk}
                )
            # Images are JPEG or PNG, compressed already: stored as they are.
            info = zipfile.ZipInfo(name, date_time=_zip_time(image))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = image.bytes or 0  # lets zipfile choose ZIP64 for a huge file
            digest = hashlib.sha256()
            try:
                source = storage.open(image.file.name, "rb")
            except FileNotFoundError:
                raise ExportFailed(
                    _("The file of image #%(id)d (%(name)s) is missing from storage.")
                    % {"id": image.pk, "name": image.file.name}
                ) from None
            with source, archive.open(info, "w") as member:
                for chunk in source.chunks(CHUNK_SIZE):
                    digest.update(chunk)
                    member.write(chunk)
            if digest.hexdigest() != image.sha256:
                raise ExportFailed(
                    _(
                        "The stored file of image #%(id)d does not match its recorded "
                        "SHA-256 (%(recorded)s, read %(read)s); it may have been altered. "
                        "Nothing was exported."
                    )
                    % {"id": image.pk, "recorded": image.sha256, "read": digest.hexdigest()}
                )
            rows.append(_manifest_row(name, image, approvals[image.pk]))
        archive.writestr(_manifest_info("manifest.csv"), _manifest_csv(rows), zipfile.ZIP_DEFLATED)
        archive.writestr(
            _manifest_info("manifest.json"),
            json.dumps(
                {
                    "campaign": {"slug": campaign.slug, "name": campaign.name},
                    "exported_at": timezone.now().isoformat(),
                    "images": rows,
                },
                indent=2,
                ensure_ascii=False,
            ),
            zipfile.ZIP_DEFLATED,
        )
    return Written(image_ids=[image.pk for image in images])


def _manifest_row(
    name: str, image: GeneratedImage, approvals: list[ReviewDecision]
) -> dict[str, Any]:
    task = image.task
    decided = image.reviewed_at or (approvals[-1].created_at if approvals else None)
    return {
        "file": name,
        "image_id": image.pk,
        "alt_text": image.alt_text,
        "prompt": task.prompt,
        "seed": task.seed,
        "model": task.model,
        "provider": task.provider,
        "aspect_ratio": task.aspect_ratio,
        "width": image.width,
        "height": image.height,
        "bytes": image.bytes,
        "content_type": image.content_type,
        "sha256": image.sha256,
        "approved_by": [decision.reviewer_label for decision in approvals],
        "approved_at": decided.isoformat() if decided else None,
    }


def _manifest_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "approved_by": "; ".join(row["approved_by"]),
                "seed": "" if row["seed"] is None else row["seed"],
                "approved_at": row["approved_at"] or "",
            }
        )
    return buffer.getvalue()


def _manifest_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=timezone.now().timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _zip_time(image: GeneratedImage) -> tuple[int, int, int, int, int, int]:
    moment = image.completed_at or image.created_at
    year, month, day, hour, minute, second = moment.timetuple()[:6]
    return (max(year, 1980), month, day, hour, minute, second)  # zip dates start in 1980


# -- the service and the job -----------------------------------------------------------------


def request_export(campaign_id: int, actor: Actor) -> Export:
    """Ask for a zip of the campaign's approved images, built by :func:`build_export`.

    Refused with :class:`ReviewError` (nothing created) when ``actor`` may not export or
    nothing is approved. An export of the campaign still queued is returned (and its job
    queued again, harmlessly: the job builds each export once) rather than doubled.
    """
    with transaction.atomic():
        try:
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        except Campaign.DoesNotExist:
            raise ReviewError(_("There is no campaign #%(id)d.") % {"id": campaign_id}) from None
        review.require(actor, PERM_EXPORT, _("download the approved images of campaigns"))
        if not campaign.images.approved().exists():
            raise _nothing_approved(campaign)
        export = campaign.exports.filter(status=Export.Status.QUEUED).first()
        if export is None:
            export = Export.objects.create(campaign=campaign, requested_by_id=actor.user_id)
        export_id = export.pk
        transaction.on_commit(lambda: queueing.enqueue(build_export, export_id))
    logger.info("Export %s of %s requested by %s", export.pk, campaign.slug, actor.label)
    return export


def download_name(export: Export) -> str:
    """The zip's name for the person downloading it: ``{slug}-approved-{export id}.zip``."""
    return f"{export.campaign.slug}-approved-{export.pk}.zip"


def export_file_name(export: Export) -> str:
    """Where one build of ``export`` goes in the images' storage.

    A random part: two runs of the job racing on one export never write the same name, so
    the loser deletes only its own copy, also on storages that overwrite (S3).
    """
    prefix = conf.get("UPLOAD_PREFIX").strip("/")
    stem = download_name(export).removesuffix(".zip")
    return f"{prefix}/{export.campaign.slug}/exports/{stem}-{secrets.token_hex(4)}.zip"


def build_export(export_id: int) -> str:
    """RQ job: build the zip of a queued export; returns the export's status.

    Idempotent: an export that is ready or failed is left as it is, and of two runs at
    once only the first to finish records its zip (the other deletes its own copy). The
    zip is built outside any transaction (it takes seconds) in a temporary file, then
    saved to storage; the export is marked ready under locks on its row and its images,
    so a revoke landing meanwhile either sees the export's ``image_ids`` (and marks it
    stale) or is seen by it.
    """
    try:
        export = Export.objects.select_related("campaign", "requested_by").get(pk=export_id)
    except Export.DoesNotExist:
        logger.warning("Export %s is gone; nothing to build.", export_id)
        return "missing"
    if export.status != Export.Status.QUEUED:
        return str(export.status)
    campaign = export.campaign
    try:
        images = exportable_images(campaign)
        with tempfile.TemporaryFile(prefix="imagen-export-") as scratch:
            written = write_zip(campaign, images, scratch)
            size = scratch.tell()
            name = image_storage().save(export_file_name(export), File(scratch))
    except (ReviewError, ExportFailed) as exc:
        return _fail(export_id, str(exc))
    except Exception as exc:  # storages raise their own types: a full disk, S3 down
        logger.exception("Export %s of %s failed", export_id, campaign.slug)
        return _fail(
            export_id,
            _("The zip could not be written to storage (%(error)s); ask for it again.")
            % {"error": f"{type(exc).__name__}: {exc}"},
        )
    return _finish(export_id, name, size, images, written)


def _finish(
    export_id: int, name: str, size: int, images: list[GeneratedImage], written: Written
) -> str:
    rounds = {image.pk: image.review_round for image in images}
    with transaction.atomic():
        export = Export.objects.select_for_update().get(pk=export_id)
        if export.status != Export.Status.QUEUED:
            # Another run of this job finished first: its zip is the one recorded.
            transaction.on_commit(lambda: image_storage().delete(name))
            return str(export.status)
        # The same row locks revoke() takes first, so the two are serialised.
        now = GeneratedImage.objects.select_for_update().filter(pk__in=list(rounds)).approved()
        still = dict(now.values_list("pk", "review_round"))
        export.status = Export.Status.READY
        export.file_name = name
        export.bytes = size
        export.image_ids = written.image_ids
        export.stale = still != rounds
        export.error_message = ""
        export.finished_at = timezone.now()
        export.save()
        activity.record(
            export.campaign_id,
            Verb.EXPORTED,
            Actor.of(export.requested_by),
            note=_("%(count)d approved image(s) in %(file)s")
            % {"count": len(rounds), "file": name},
        )
        signals.send_on_commit(signals.export_ready, Export, export=export)
    logger.info("Export %s ready: %s (%d bytes)", export_id, name, size)
    return str(export.status)


def _fail(export_id: int, message: str) -> str:
    Export.objects.filter(pk=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.FAILED, error_message=message, finished_at=timezone.now()
    )
    logger.warning("Export %s failed: %s", export_id, message)
    return str(Export.Status.FAILED)
