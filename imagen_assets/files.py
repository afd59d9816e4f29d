"""Serving image files: an original only to those who may see it, thumbnails to viewers.

Both files of an image live in one storage, ``IMAGEN_ASSETS["STORAGE"]`` (both model fields
use it; giving thumbnails a storage of their own would need a migration). A site keeps
that storage private (check ``imagen_assets.W005`` warns when it is publicly reachable),
and pages never carry a storage URL: they link to the views here, which check permission
and then stream the file from storage, or, when the storage signs URLs (S3 with
query-string auth), redirect to a URL that expires within a minute.

- ``original/<id>/``: an eligible reviewer of the image's campaign (``review.may_review``,
  with the approve or the reject permission), or, once the image is approved, anyone
  with view permission.
- ``thumbnail/<id>/``: anyone with view permission (``docs/workflow.md``: "Thumbnails may
  be shown to anyone with view permission").
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import FileSystemStorage, Storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.models import GeneratedImage
from imagen_assets.status import ReviewStatus
from imagen_assets.storage import image_storage

logger = logging.getLogger(__name__)

#: How long a signed storage URL we redirect to stays valid: long enough to follow the
#: redirect, too short to be worth passing on.
SIGNED_URL_SECONDS = 60
#: How long a browser may keep a file for its user (the admin pages reload themselves
#: while images are made; thumbnails never change once written).
ORIGINAL_CACHE_SECONDS = 5 * 60
THUMBNAIL_CACHE_SECONDS = 60 * 60

PERM_VIEW = f"{review.APP}.view_generatedimage"
PERM_CHANGE = f"{review.APP}.change_generatedimage"


# -- who may open what ---------------------------------------------------------------------


def may_view(user: Any) -> bool:
    """Whether ``user`` may see images (and their thumbnails): view or change permission,
    as in the admin."""
    return bool(
        user.is_authenticated
        and user.is_active
        and (user.has_perm(PERM_VIEW) or user.has_perm(PERM_CHANGE))
    )


def may_open_original(user: Any, image: GeneratedImage) -> bool:
    """Whether ``user`` may open the original file of ``image``.

    An image that is not approved is not for use: only an eligible reviewer of its
    campaign (approve or reject permission, reviewer group) sees its original. Once
    approved, anyone with view permission does.
    """
    if not (user.is_authenticated and user.is_active):
        return False
    actor = Actor(user=user)
    if review.may_review(actor, image.campaign) or review.may_review(
        actor, image.campaign, permission=review.PERM_REJECT
    ):
        return True
    return image.review_status == ReviewStatus.APPROVED and may_view(user)


def original_url(image: GeneratedImage) -> str:
    """The address of the permission-checked view of ``image``'s original."""
    return reverse("imagen_assets:original", args=[image.pk])


def thumbnail_url(image: GeneratedImage) -> str:
    """The address of the view of ``image``'s thumbnail (view permission)."""
    return reverse("imagen_assets:thumbnail", args=[image.pk])


# -- storages ------------------------------------------------------------------------------


def _s3_storage_class() -> type[Any] | None:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages (and boto3) are optional
        return None
    cls: type[Any] = S3Storage
    return cls


def signs_urls(storage: Storage) -> bool:
    """Whether ``storage.url(name, expire=...)`` gives a signed URL that expires: S3 with
    query-string auth, and, behind a custom domain, a CloudFront signer."""
    s3 = _s3_storage_class()
    if s3 is None or not isinstance(storage, s3):
        return False
    if not storage.querystring_auth:
        return False
    return not storage.custom_domain or bool(storage.cloudfront_signer)


def public_reason(storage: Storage) -> str | None:
    """Why files in ``storage`` can be fetched without permission, or None when we know no
    way (a storage we cannot judge is given the benefit of the doubt)."""
    if isinstance(storage, FileSystemStorage):
        media_root = settings.MEDIA_ROOT
        if not media_root or not storage.base_url:
            return None
        location = Path(storage.location).resolve()
        root = Path(media_root).resolve()
        if location == root or root in location.parents:
            return (
                f"it is a FileSystemStorage under MEDIA_ROOT ({root}) with the URL "
                f"{storage.base_url!r}, which sites serve to anyone"
            )
        return None
    s3 = _s3_storage_class()
    if s3 is not None and isinstance(storage, s3) and not signs_urls(storage):
        if not storage.querystring_auth:
            return "it is an S3 storage without query-string auth (querystring_auth=False)"
        return "it is an S3 storage behind a custom domain without a CloudFront signer"
    return None


def serve(file: FieldFile, *, cache_seconds: int) -> HttpResponseBase:
    """An image's stored ``file`` for a request already allowed to see it: a redirect to a
    short-lived signed URL where the storage signs them, else the bytes, streamed (404 when
    there is no file). Browsers may keep it ``cache_seconds``, for this user only."""
    name = file.name
    if not name:
        raise Http404
    # Looked up now, like every other use of the storage: the field's own instance was
    # made at import time and would not follow a change of settings.
    storage: Any = image_storage()
    response: HttpResponseBase
    if signs_urls(storage):
        response = HttpResponseRedirect(storage.url(name, expire=SIGNED_URL_SECONDS))
        # The redirect must not outlive the URL it points to.
        cache_seconds = min(cache_seconds, SIGNED_URL_SECONDS // 2)
    else:
        try:
            handle = storage.open(name, "rb")
        except FileNotFoundError:
            logger.warning("Image file %s is missing from storage", name)
            raise Http404 from None
        response = FileResponse(handle, filename=posixpath.basename(name))
    patch_cache_control(response, private=True, max_age=cache_seconds)
    return response


# -- views ---------------------------------------------------------------------------------


@login_required
@require_safe
def original(request: HttpRequest, image_id: int) -> HttpResponseBase:
    """An image's original file, for those :func:`may_open_original` allows (403 else)."""
    image = get_object_or_404(GeneratedImage.objects.select_related("campaign"), pk=image_id)
    if not may_open_original(request.user, image):
        raise PermissionDenied
    return serve(image.file, cache_seconds=ORIGINAL_CACHE_SECONDS)


@login_required
@require_safe
def thumbnail(request: HttpRequest, image_id: int) -> HttpResponseBase:
    """An image's thumbnail, for users with view permission (403 else)."""
    if not may_view(request.user):
        raise PermissionDenied
    image = get_object_or_404(GeneratedImage, pk=image_id)
    return serve(image.thumbnail, cache_seconds=THUMBNAIL_CACHE_SECONDS)
