"""The review screen: what waits for *my* decision, a request's variants side by side.

One page of the admin (``admin/imagen_assets/generatedimage/review/``, optionally
``?campaign=<id>``), reached from the admin index's count. Which images it lists is
:func:`imagen_assets.review.waiting_for`, the same rule as the count; every decision goes
through :mod:`imagen_assets.review`. The forms work without JavaScript; ``review.js`` adds
the keyboard. A fixed number of queries whatever the number of images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext, ngettext

from imagen_assets import files, review
from imagen_assets.activity import Actor
from imagen_assets.models import Campaign, Comment, GeneratedImage, GenerationTask, ReviewDecision
from imagen_assets.status import Decision, ReviewStatus

if TYPE_CHECKING:
    from django.forms import Media


class ReviewingAdmin(Protocol):
    """What the screen needs of the images' ModelAdmin (which mounts it): its site, options
    and media, and its review permissions."""

    admin_site: Any
    opts: Any

    @property
    def media(self) -> Media: ...

    def has_approve_permission(self, request: HttpRequest) -> bool: ...

    def has_reject_permission(self, request: HttpRequest) -> bool: ...


#: Images per page: enough to work through a morning's requests, few enough to load fast.
PER_PAGE = 60
#: The parameter carrying the images list's filters (Django's preserved filters).
LIST_FILTERS = "_changelist_filters"
#: The actions a card's form may post (its buttons' ``name="action"`` values).
ACTIONS = ("approve", "reject", "comment", "keep")


def screen_url(
    campaign: int | None = None, page: int | None = None, anchor: str = "", list_filters: str = ""
) -> str:
    """The review screen's address, keeping its campaign filter and page, and the images
    list's filters it was opened from (``_changelist_filters``) for the way back."""
    url = reverse("admin:imagen_assets_generatedimage_review")
    query: dict[str, Any] = {
        key: value for key, value in (("campaign", campaign), ("page", page)) if value is not None
    }
    if list_filters:
        query[LIST_FILTERS] = list_filters
    if query:
        url += "?" + urlencode(query)
    return url + (f"#{anchor}" if anchor else "")


def positive_int(value: Any) -> int | None:
    """``value`` as a positive integer, or None (a filter or page typed by hand)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


@dataclass
class Group:
    """The variants of one request (a GenerationTask) that wait for me, in order."""

    task: GenerationTask
    campaign: Campaign
    images: list[GeneratedImage] = field(default_factory=list)
    #: Where the page returns once this request is done: the next request's anchor.
    next_anchor: str = ""

    @property
    def anchor(self) -> str:
        return f"request-{self.task.pk}"


def group_images(images: Iterable[GeneratedImage]) -> list[Group]:
    """Consecutive images of the same request, as groups (the page is ordered by request)."""
    groups: list[Group] = []
    for image in images:
        if not groups or groups[-1].task.pk != image.task_id:
            groups.append(Group(task=image.task, campaign=image.campaign))
        groups[-1].images.append(image)
    return groups


class ReviewScreen:
    """The page and its form handling, for the images' ModelAdmin that mounts it."""

    template = "imagen_assets/admin/review_screen.html"

    def __init__(self, model_admin: ReviewingAdmin) -> None:
        self.model_admin = model_admin

    def view(self, request: HttpRequest) -> HttpResponse:
        """GET: the page. POST: one decision, comment or "keep", then back to the page."""
        if not self.model_admin.has_approve_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self.post(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "POST"])
        return self.page(request)

    # -- the page ----------------------------------------------------------------------------

    def page(self, request: HttpRequest) -> HttpResponse:
        actor = Actor.of(request.user)
        campaign_id = positive_int(request.GET.get("campaign"))
        list_filters = request.GET.get(LIST_FILTERS, "")
        waiting = review.waiting_for(actor)
        # The campaign filter's choices with their counts: one grouped query.
        per_campaign = list(
            waiting.order_by()
            .values("campaign", "campaign__name")
            .annotate(n=Count("pk"))
            .order_by("campaign__name", "campaign")
        )
        total = sum(row["n"] for row in per_campaign)
        shown = waiting.filter(campaign=campaign_id) if campaign_id else waiting
        # The count comes from the grouped query above, not a second COUNT(*).
        count = (
            next((row["n"] for row in per_campaign if row["campaign"] == campaign_id), 0)
            if campaign_id
            else total
        )
        images = (
            shown.select_related("campaign", "task")
            .prefetch_related(
                Prefetch("comments", queryset=Comment.objects.order_by("created_at", "pk")),
                Prefetch(
                    "decisions",
                    queryset=ReviewDecision.objects.filter(
                        decision__in=[Decision.APPROVE, Decision.REJECT]
                    ).order_by("created_at", "pk"),
                ),
            )
            .order_by("task__created_at", "task_id", "index")
        )
        paginator = Paginator(images, PER_PAGE)
        paginator.count = count  # known already: spares the paginator its COUNT query
        page = paginator.get_page(request.GET.get("page"))
        page_images = list(page.object_list)
        for image in page_images:
            # Through the permission-checked views: the images' storage may be private (its
            # own URLs then answer 404).
            image.preview_url = (  # type: ignore[attr-defined]
                files.thumbnail_url(image) if image.thumbnail else files.original_url(image)
            )
            # Only the current round counts (a revoke starts a new one).
            image.round_approvals = [  # type: ignore[attr-defined]
                row
                for row in image.decisions.all()
                if row.round == image.review_round and row.decision == Decision.APPROVE
            ]
        groups = group_images(page_images)
        for group, following in pairwise(groups):
            group.next_anchor = following.anchor
        context = {
            **self.model_admin.admin_site.each_context(request),
            "title": gettext("Waiting for your review"),
            "opts": self.model_admin.opts,
            "media": self.model_admin.media,
            "groups": groups,
            "page_obj": page,
            "paginator": paginator,
            "count": count,
            "total": total,
            "campaigns": per_campaign,
            "campaign_id": campaign_id,
            "can_reject": self.model_admin.has_reject_permission(request),
            "page_url": screen_url(
                campaign_id, page.number if page.number > 1 else None, list_filters=list_filters
            ),
            "list_filters": list_filters,
            "list_url": reverse("admin:imagen_assets_generatedimage_changelist")
            + (f"?{list_filters}" if list_filters else ""),
        }
        return TemplateResponse(request, self.template, context)

    # -- decisions ---------------------------------------------------------------------------

    def post(self, request: HttpRequest) -> HttpResponse:
        """Record what the card's form asked for, say what happened, and return to the same
        place: the same filter and page, this request if it still waits, else the next."""
        actor = Actor.of(request.user)
        data = request.POST
        action = data.get("action", "")
        image_id = positive_int(data.get("keep") if action == "keep" else data.get("image"))
        note = data.get("note", "")
        if action not in ACTIONS or image_id is None:
            messages.error(request, gettext("Nothing was decided: the form was incomplete."))
        else:
            try:
                self.apply(request, actor, action, image_id, data, note)
            except review.ReviewError as exc:
                messages.error(request, str(exc))
        return HttpResponseRedirect(self.back_url(actor, data, action))

    def apply(
        self, request: HttpRequest, actor: Actor, action: str, image_id: int, data: Any, note: str
    ) -> None:
        """Do ``action`` through :mod:`imagen_assets.review` and say so (its refusals
        propagate as :class:`~imagen_assets.review.ReviewError`)."""
        if action == "comment":
            review.comment(image_id, actor, note)
            messages.success(request, gettext("Comment added to image #%(id)d.") % {"id": image_id})
            return
        if action == "keep":
            others = [pk for pk in map(positive_int, data.getlist("group")) if pk is not None]
            kept = review.keep(image_id, others, actor, note=note)
            rejected = len({pk for pk in others if pk != image_id})
            messages.success(
                request,
                " ".join(
                    [
                        self.approved_message(kept),
                        ngettext(
                            "Rejected %(count)d other image.",
                            "Rejected %(count)d other images.",
                            rejected,
                        )
                        % {"count": rejected},
                    ]
                ),
            )
            return
        decision = Decision.APPROVE if action == "approve" else Decision.REJECT
        if decision is Decision.REJECT and not self.model_admin.has_reject_permission(request):
            raise review.ReviewError(gettext("You may approve images but not reject them."))
        image = review.decide(image_id, decision, actor, note=note)
        if decision is Decision.REJECT:
            messages.success(request, gettext("Image #%(id)d rejected.") % {"id": image.pk})
        else:
            messages.success(request, self.approved_message(image))

    @staticmethod
    def approved_message(image: GeneratedImage) -> str:
        """ "Approved" once the round is decided, else how many approvals it has of how many."""
        if image.review_status == ReviewStatus.APPROVED:
            return gettext("Image #%(id)d approved.") % {"id": image.pk}
        given = review.round_decisions(image).filter(decision=Decision.APPROVE).count()
        return gettext("Your approval of image #%(id)d is recorded: %(given)d of %(required)d.") % {
            "id": image.pk,
            "given": given,
            "required": image.campaign.required_approvals,
        }

    @staticmethod
    def back_url(actor: Actor, data: Any, action: str) -> str:
        campaign_id = positive_int(data.get("campaign"))
        page = positive_int(data.get("page"))
        task_id = positive_int(data.get("task"))
        anchor = str(data.get("next_anchor", ""))
        if not anchor.startswith("request-") or not anchor[8:].isdigit():
            anchor = ""
        # A comment or a single decision may leave images of this request waiting: stay on it.
        if (
            action != "keep"
            and task_id is not None
            and review.waiting_for(actor).filter(task_id=task_id).exists()
        ):
            anchor = f"request-{task_id}"
        return screen_url(campaign_id, page, anchor, str(data.get(LIST_FILTERS, "")))
