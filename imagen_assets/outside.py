"""The outside reviewer's page: one campaign's images waiting for them, nothing else.

Reached by the signed link of :mod:`imagen_assets.sharing`, outside the admin and without
an account (``login_not_required``, so sites running ``LoginRequiredMiddleware`` serve it).
It lists the ready images of the link's campaign that are pending in their current round
and not yet decided by the link's address, each with its thumbnail (never the original),
its prompt, and one form to approve, reject (a reason) or comment. Decisions and comments
go through :mod:`imagen_assets.review` as ``Actor(email=link.email)``, so they obey the same
rules and are logged under that address.

What it refuses leaks nothing: any token that is not ours gets the same 404 page, a
genuine but expired or revoked one a 410 page, and neither names the campaign. Every
request counts against a budget per token and per client address (the site's cache);
beyond it the answer is 429.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from imagen_assets import files, review, sharing
from imagen_assets.activity import Actor
from imagen_assets.models import GeneratedImage, ReviewDecision, ShareLink
from imagen_assets.status import CampaignStatus, Decision

#: Requests per minute, per token and per client address: for the page and its forms, and
#: for the thumbnails (a page load fetches one per image).
RATE_LIMITS = {"page": 60, "thumbnail": 600}
WINDOW_SECONDS = 60

#: What the page says after a successful POST (the redirect carries only the key).
DONE = {
    "approve": gettext_lazy("Approved. Thank you."),
    "reject": gettext_lazy("Rejected. Thank you; your reason was passed on."),
    "comment": gettext_lazy("Your comment was added."),
}


class OutsideReviewForm(forms.Form):
    """One image's form: a note and the button pressed."""

    image = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    action = forms.ChoiceField(
        choices=[
            ("approve", gettext_lazy("Approve")),
            ("reject", gettext_lazy("Reject")),
            ("comment", gettext_lazy("Comment")),
        ]
    )
    note = forms.CharField(
        label=gettext_lazy("Note"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Optional to approve; say why to reject; the text of a comment."),
    )


def waiting_for(link: ShareLink) -> QuerySet[GeneratedImage]:
    """The images of ``link``'s campaign that wait for its address: ready, pending in their
    current round, not decided by it in that round; none in an archived campaign."""
    if link.campaign.status == CampaignStatus.ARCHIVED:
        return GeneratedImage.objects.none()
    decided = ReviewDecision.objects.filter(
        image=OuterRef("pk"),
        round=OuterRef("review_round"),
        reviewer_label=link.email,
        decision__in=[Decision.APPROVE, Decision.REJECT],
    )
    return (
        GeneratedImage.objects.pending_review()
        .filter(campaign_id=link.campaign_id)
        .exclude(Exists(decided))
        .select_related("task")
        .order_by("task_id", "index")
    )


# -- refusals ------------------------------------------------------------------------------


def _refusal(request: HttpRequest, status: int, *, retry_after: int | None = None) -> HttpResponse:
    response = render(
        request, "imagen_assets/outside/refused.html", {"status": status}, status=status
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _over_limit(request: HttpRequest, token: str, bucket: str) -> int | None:
    """Count this request for the token and for the client address; the seconds until the
    next window if either is over the bucket's limit, else None."""
    limit = RATE_LIMITS[bucket]
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    over = False
    for who in (f"token:{token}", f"addr:{request.META.get('REMOTE_ADDR', '')}"):
        # Hashed: tokens must not sit in the cache in clear, and keys stay short.
        digest = hashlib.sha256(who.encode()).hexdigest()[:32]
        key = f"imagen_assets:outside:{bucket}:{digest}:{window}"
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr: this is its first request again
            cache.set(key, 1, timeout=WINDOW_SECONDS * 2)
            count = 1
        over = over or count > limit
    return int(WINDOW_SECONDS - now % WINDOW_SECONDS) + 1 if over else None


def _outside(
    bucket: str,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """For a view taking ``(request, link, ...)``: throttled, the token resolved to its
    active link or refused, and the answer kept out of Referer headers and indexes."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapper(request: HttpRequest, token: str, **kwargs: Any) -> HttpResponseBase:
            retry_after = _over_limit(request, token, bucket)
            if retry_after is not None:
                response: HttpResponseBase = _refusal(request, 429, retry_after=retry_after)
            else:
                try:
                    link = sharing.link_for_token(token)
                except sharing.ExpiredLink:
                    response = _refusal(request, 410)
                except sharing.InvalidLink:
                    response = _refusal(request, 404)
                else:
                    response = view(request, link, token=token, **kwargs)
            # The token is in the address: keep it out of Referer headers and search indexes.
            response["Referrer-Policy"] = "no-referrer"
            response["X-Robots-Tag"] = "noindex, nofollow"
            return response

        return wrapper

    return decorate


# -- views ---------------------------------------------------------------------------------


@login_not_required
@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
@_outside("page")
def review_page(request: HttpRequest, link: ShareLink, token: str) -> HttpResponseBase:
    """The list and its forms; a POST records one decision or comment, then redirects back."""
    ShareLink.objects.filter(pk=link.pk).update(last_used_at=timezone.now())
    error = ""
    failed_form: OutsideReviewForm | None = None
    if request.method == "POST":
        form = OutsideReviewForm(request.POST)
        if form.is_valid():
            try:
                _act(link, **form.cleaned_data)
            except review.ReviewError as exc:
                error = str(exc)
                failed_form = form
            else:
                url = reverse("imagen_assets:outside_review", args=[token])
                return redirect(f"{url}?done={form.cleaned_data['action']}")
        else:
            error = _("The form was incomplete; try again.")
    images = list(waiting_for(link))
    cards = [
        {
            "image": image,
            "thumbnail_url": reverse(
                "imagen_assets:outside_thumbnail", kwargs={"token": token, "image_id": image.pk}
            ),
            "form": (
                failed_form
                if failed_form is not None and failed_form.cleaned_data["image"] == image.pk
                else OutsideReviewForm(initial={"image": image.pk}, auto_id=f"id_{image.pk}_%s")
            ),
        }
        for image in images
    ]
    return render(
        request,
        "imagen_assets/outside/review.html",
        {
            "campaign": link.campaign,
            "link": link,
            "cards": cards,
            "error": error,
            "done": DONE.get(request.GET.get("done", "")) if request.method != "POST" else None,
        },
        status=400 if error else 200,
    )


def _act(link: ShareLink, *, image: int, action: str, note: str) -> None:
    """Record one decision or comment by the link's address on an image that waits for it.
    An image that does not (decided meanwhile, another campaign's) is refused alike."""
    if not waiting_for(link).filter(pk=image).exists():
        raise review.ReviewError(
            _("This image no longer waits for your review; the page shows what does.")
        )
    actor = Actor(email=link.email)
    if action == "comment":
        review.comment(image, actor, note)
    else:
        review.decide(image, Decision(action), actor, note=note)


@login_not_required
@require_safe
@_outside("thumbnail")
def thumbnail(request: HttpRequest, link: ShareLink, token: str, image_id: int) -> HttpResponseBase:
    """The thumbnail of an image waiting for the link's address (404 for any other)."""
    image = waiting_for(link).filter(pk=image_id).first()
    if image is None or not image.thumbnail:
        return _refusal(request, 404)
    return files.serve(image.thumbnail, cache_seconds=files.THUMBNAIL_CACHE_SECONDS)
