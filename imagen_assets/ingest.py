"""Fetch, check and store one provider output: bytes in, a typed result out.

No database access here (it runs in worker threads, one per output); no status is
written (the caller hands the result to :func:`imagen_assets.lifecycle.finish_image`).
Orphan-free: when a run fails after writing a file, it deletes what it wrote, and a caller
whose result lost the race deletes it with :func:`discard`.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass

from imagen_assets import conf
from imagen_assets.downloads import DownloadError, download
from imagen_assets.imaging import CheckedImage, ImageRejected, Provenance, check_image
from imagen_assets.lifecycle import FileFields
from imagen_assets.models import GeneratedImage
from imagen_assets.storage import delete_files, save_file

logger = logging.getLogger(__name__)

#: Downloads tried within one run before the image is left for the next run (row D10).
DOWNLOAD_ATTEMPTS = 4
#: Waits between them: full jitter up to 1, 2, 4 s, or the host's Retry-After.
sleep = time.sleep


@dataclass(frozen=True)
class NotStored:
    """Why an output could not be stored. ``transient``: the CDN or the storage was
    unreachable, so trying again later may work; otherwise the file was refused."""

    error: str
    transient: bool
    retry_after: float | None = None


def ingest(
    image: GeneratedImage, url: str, provenance: Provenance | None = None
) -> FileFields | NotStored:
    """Download the output at ``url`` for ``image``, check it and store a clean copy with
    its thumbnail. ``image.campaign`` must be loaded (the file names use its slug);
    ``provenance`` is written into the clean file."""
    try:
        checked = fetch_and_check(url, provenance)
        return store(image, checked)
    except DownloadError as exc:
        return NotStored(
            f"Could not store the image: {exc}",
            transient=exc.transient,
            retry_after=exc.retry_after,
        )
    except ImageRejected as exc:
        return NotStored(f"Could not store the image: {exc}", transient=False)
    except Exception as exc:  # storage backends raise their own types: a full disk, S3 down
        logger.exception("Storing image %s failed", image.pk)
        return NotStored(f"Could not store the image ({type(exc).__name__}).", transient=True)


def fetch_and_check(url: str, provenance: Provenance | None = None) -> CheckedImage:
    """Download one output and validate it.

    A transient failure (timeout, reset, temporary DNS failure, HTTP 429 or 5xx) is tried
    again, up to :data:`DOWNLOAD_ATTEMPTS` times, with full-jitter backoff or after the
    host's ``Retry-After``, as long as the wait ends within ``DOWNLOAD_TIMEOUT`` of the
    first try; otherwise the last error is raised (still transient, with the host's
    ``retry_after``) and the caller tries again in a later run, until the task's deadline.
    """
    timeout = conf.get("DOWNLOAD_TIMEOUT")
    deadline = time.monotonic() + timeout
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            downloaded = download(
                url,
                max_bytes=conf.get("DOWNLOAD_MAX_BYTES"),
                timeout=timeout,
                allow_hosts=conf.get("DOWNLOAD_ALLOW_HOSTS"),
            )
            break
        except DownloadError as exc:
            if not exc.transient or attempt == DOWNLOAD_ATTEMPTS:
                raise
            wait = exc.retry_after
            if wait is None:
                wait = random.uniform(0.1, float(2 ** (attempt - 1)))
            if time.monotonic() + wait > deadline:
                raise
            logger.info("Download failed (%s); trying again in %.1f s", exc, wait)
            sleep(wait)
    return check_image(
        downloaded.content,
        max_pixels=conf.get("MAX_IMAGE_PIXELS"),
        thumbnail_size=conf.get("THUMBNAIL_SIZE"),
        provenance=provenance,
    )


def store(image: GeneratedImage, checked: CheckedImage) -> FileFields:
    """Write the original bytes and the thumbnail; a failure removes what was written."""
    # A random part: two runs racing on one image (webhook and poll) never write the same
    # name, so the loser deletes only its own copy, also on storages that overwrite (S3).
    stem = f"{image.task_id}-{image.index}-{checked.sha256[:12]}-{secrets.token_hex(3)}"
    file_field = GeneratedImage._meta.get_field("file")
    thumb_field = GeneratedImage._meta.get_field("thumbnail")
    name = save_file(
        file_field.generate_filename(image, f"{stem}.{checked.extension}"), checked.content
    )
    try:
        thumb = save_file(thumb_field.generate_filename(image, f"{stem}.jpg"), checked.thumbnail)
    except BaseException:
        delete_files([name])
        raise
    return FileFields(
        file=name,
        thumbnail=thumb,
        width=checked.width,
        height=checked.height,
        bytes=len(checked.content),
        sha256=checked.sha256,
        content_type=checked.content_type,
        served_sha256=checked.served_sha256,
        provider_c2pa=checked.provider_c2pa,
    )


def discard(stored: FileFields) -> None:
    """Delete the files of a result nobody will own (another run finished the image)."""
    delete_files([stored.file, stored.thumbnail])
