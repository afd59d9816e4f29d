"""Fetch, check and store one provider output: bytes in, a typed result out.

Downloading and checking (:func:`fetch`) touch no database, so ``complete()`` runs them
in worker threads, one per output; storing (:func:`keep`, :func:`store`) records each
file name before writing it, in the caller's thread. No status is written (the caller
hands the result to :func:`imagen_assets.lifecycle.finish_image`).
Orphan-free: when a run fails after writing a file, it deletes what it wrote, a caller
whose result lost the race deletes it with :func:`discard`, and what a killed run left
behind is found by its records (:mod:`imagen_assets.orphans`).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import SuspiciousFileOperation
from django.utils.translation import gettext as _

from imagen_assets import conf, orphans
from imagen_assets.downloads import Downloaded, DownloadError, download
from imagen_assets.hosts import ResultHosts
from imagen_assets.imaging import CheckedImage, ImageRejected, Provenance, check_image
from imagen_assets.lifecycle import FileFields
from imagen_assets.models import GeneratedImage, StoredFile
from imagen_assets.storage import save_file

logger = logging.getLogger(__name__)

#: Downloads tried within one run before the image is left for the next run (row D10).
DOWNLOAD_ATTEMPTS = 4
#: Downloads of a file that arrived damaged (cut short or corrupt), the first included,
#: before the image is failed (row I4): a CDN may have served a partial file once.
DAMAGED_DOWNLOADS = 2
#: Waits between them: full jitter up to 1, 2, 4 s, or the host's Retry-After.
sleep = time.sleep

#: What the two files of an image are, in the order :func:`file_names` gives them.
KINDS = (StoredFile.Kind.ORIGINAL, StoredFile.Kind.THUMBNAIL)


@dataclass(frozen=True)
class NotStored:
    """Why an output could not be stored. ``transient``: the CDN or the storage was
    unreachable, so trying again later may work; otherwise the file was refused."""

    error: str
    transient: bool
    retry_after: float | None = None


def ingest(
    image: GeneratedImage, url: str, hosts: ResultHosts, provenance: Provenance | None = None
) -> FileFields | NotStored:
    """Download the output at ``url`` for ``image``, check it and store it with its
    thumbnail. ``image.campaign`` must be loaded (the file names use its slug); ``provenance``
    is written into the clean file. Runs in a
    thread with database access (storing records the file names); :func:`fetch` alone
    does not need it. ``hosts``: where the task's provider serves its results."""
    checked = fetch(image, url, hosts, provenance)
    if isinstance(checked, NotStored):
        return checked
    return keep(image, checked)


def fetch(
    image: GeneratedImage, url: str, hosts: ResultHosts, provenance: Provenance | None = None
) -> CheckedImage | NotStored:
    """Download and check the output at ``url`` for ``image``; no database access, so
    safe in worker threads."""
    try:
        return fetch_and_check(url, hosts, provenance)
    except DownloadError as exc:
        return NotStored(
            f"Could not store the image: {exc}",
            transient=exc.transient,
            retry_after=exc.retry_after,
        )
    except ImageRejected as exc:
        return NotStored(f"Could not store the image: {exc}", transient=False)
    except Exception as exc:
        logger.exception("Fetching the image %s failed", image.pk)
        return NotStored(f"Could not store the image ({type(exc).__name__}).", transient=True)


def keep_all(
    pairs: Sequence[tuple[GeneratedImage, CheckedImage | NotStored]],
) -> list[FileFields | NotStored]:
    """Store each checked output of one run (a :class:`NotStored` passes through): every
    file name is recorded first, all in one committed transaction, then the files are
    written image by image (:func:`keep`)."""
    planned: list[list[str] | NotStored] = []
    for image, checked in pairs:
        if isinstance(checked, NotStored):
            planned.append(checked)
            continue
        try:
            planned.append(file_names(image, checked))
        except SuspiciousFileOperation as exc:
            planned.append(_refused(image, exc))
    orphans.record(
        [
            (name, kind, image.pk)
            for (image, _checked), names in zip(pairs, planned, strict=True)
            if not isinstance(names, NotStored)
            for name, kind in zip(names, KINDS, strict=True)
        ]
    )
    results: list[FileFields | NotStored] = []
    for (image, checked), names in zip(pairs, planned, strict=True):
        if isinstance(names, NotStored):
            results.append(names)
        else:
            assert not isinstance(checked, NotStored)  # planned only for checked images
            results.append(keep(image, checked, names))
    return results


def keep(
    image: GeneratedImage, checked: CheckedImage, names: Sequence[str] | None = None
) -> FileFields | NotStored:
    """:func:`store` ``checked`` for ``image``; a storage failure is a :class:`NotStored`.

    A file name the storage refuses (``SuspiciousFileOperation``: a path outside it, a
    name too long) fails the image at once, like any other refused file; other storage
    errors (a full disk, S3 down) are transient."""
    try:
        return store(image, checked, names)
    except SuspiciousFileOperation as exc:
        return _refused(image, exc)
    except Exception as exc:  # storage backends raise their own types: a full disk, S3 down
        logger.exception("Storing image %s failed", image.pk)
        return NotStored(f"Could not store the image ({type(exc).__name__}).", transient=True)


def _refused(image: GeneratedImage, exc: SuspiciousFileOperation) -> NotStored:
    logger.warning("Storage refused the file name of image %s: %s", image.pk, exc)
    return NotStored(
        _("Could not store the image: the storage refused its file name (%(reason)s).")
        % {"reason": exc},
        transient=False,
    )


def fetch_and_check(
    url: str, hosts: ResultHosts, provenance: Provenance | None = None
) -> CheckedImage:
    """Download one output and validate it.

    ``hosts``: where the task's provider serves its results (any other host is refused
    before it is looked up, row D1).
    A transient failure (timeout, reset, temporary DNS failure, HTTP 429 or 5xx) is tried
    again, up to :data:`DOWNLOAD_ATTEMPTS` times, with full-jitter backoff or after the
    host's ``Retry-After``, as long as the wait ends within ``DOWNLOAD_TIMEOUT`` of the
    first try; otherwise the last error is raised (still transient, with the host's
    ``retry_after``) and the caller tries again in a later run, until the task's deadline.
    A file that arrives damaged (cut short or corrupt: ``ImageRejected.damaged``) is
    downloaded once more (:data:`DAMAGED_DOWNLOADS`), then refused with the reason (I4).
    """
    for download_number in range(1, DAMAGED_DOWNLOADS + 1):
        downloaded = _download(url, hosts)
        try:
            return check_image(
                downloaded.content,
                max_pixels=conf.get("MAX_IMAGE_PIXELS"),
                thumbnail_size=conf.get("THUMBNAIL_SIZE"),
                provenance=provenance,
            )
        except ImageRejected as exc:
            if not exc.damaged:
                raise
            if download_number == DAMAGED_DOWNLOADS:
                raise ImageRejected(
                    _("%(reason)s, in each of %(count)d downloads")
                    % {"reason": exc, "count": DAMAGED_DOWNLOADS},
                    damaged=True,
                ) from None
            logger.info("Downloaded a damaged image (%s); downloading it once more", exc)
    raise AssertionError("unreachable")  # pragma: no cover


def _download(url: str, hosts: ResultHosts) -> Downloaded:
    """:func:`download` with the retries of transient failures described above."""
    timeout = conf.get("DOWNLOAD_TIMEOUT")
    deadline = time.monotonic() + timeout
    attempt = 1
    while True:
        try:
            return download(
                url,
                max_bytes=conf.get("DOWNLOAD_MAX_BYTES"),
                timeout=timeout,
                hosts=hosts,
                allow_hosts=conf.get("DOWNLOAD_ALLOW_HOSTS"),
            )
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
            attempt += 1


def file_names(image: GeneratedImage, checked: CheckedImage) -> list[str]:
    """The names the original and the thumbnail of ``checked`` are written under (new
    ones on every call). Raises ``SuspiciousFileOperation`` for a name the storage or the
    image's fields cannot take."""
    # A random part: two runs racing on one image (webhook and poll) never write the same
    # name, so the loser deletes only its own copy, also on storages that overwrite (S3).
    stem = f"{image.task_id}-{image.index}-{checked.sha256[:12]}-{secrets.token_hex(3)}"
    file_field = GeneratedImage._meta.get_field("file")
    thumb_field = GeneratedImage._meta.get_field("thumbnail")
    names = [
        file_field.generate_filename(image, f"{stem}.{checked.extension}"),
        thumb_field.generate_filename(image, f"{stem}.jpg"),
    ]
    for name, field in zip(names, (file_field, thumb_field), strict=True):
        longest = field.max_length or 0
        if len(name) > longest:
            raise SuspiciousFileOperation(
                _("the name %(name)s is longer than %(max)d characters")
                % {"name": name, "max": longest}
            )
    return names


def store(
    image: GeneratedImage, checked: CheckedImage, names: Sequence[str] | None = None
) -> FileFields:
    """Write the original bytes and the thumbnail; a failure removes what was written.

    Both names are recorded (:func:`imagen_assets.orphans.record`, committed) before the
    first byte is written, so a worker killed mid-write leaves nothing the sweep cannot
    find; the image adopts the records when it is finished (``lifecycle.finish_image``).
    ``names``: from :func:`file_names`, recorded already (:func:`keep_all`). Must run
    where the database may be written outside a transaction (not in a worker thread of
    ``complete()``).
    """
    if names is None:
        names = file_names(image, checked)
        orphans.record([(name, kind, image.pk) for name, kind in zip(names, KINDS, strict=True)])
    names = list(names)
    try:
        for index, content in enumerate((checked.content, checked.thumbnail)):
            saved = save_file(names[index], content)
            if saved != names[index]:
                # The storage found the name taken and wrote under another: that copy is
                # ours, the file under the name asked for is not (never delete it).
                orphans.record([(saved, KINDS[index], image.pk)])
                orphans.forget([names[index]])
                names[index] = saved
                raise FileExistsError(f"The storage already had a file named {saved!r}")
    except BaseException:
        orphans.remove(names)
        raise
    return FileFields(
        file=names[0],
        thumbnail=names[1],
        width=checked.width,
        height=checked.height,
        bytes=len(checked.content),
        sha256=checked.sha256,
        content_type=checked.content_type,
        served_sha256=checked.served_sha256,
        provider_c2pa=checked.provider_c2pa,
        recorded=True,
    )


def discard(stored: FileFields) -> None:
    """Delete the files of a result nobody will own (another run finished the image), and
    then their records (a file the storage could not delete is left to the sweep)."""
    orphans.remove([stored.file, stored.thumbnail])
