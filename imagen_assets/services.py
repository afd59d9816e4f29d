"""What users can do: ask for images, review them. Every change is atomic and locks its rows.

The admin, the command line and host projects call these functions; none of them talks to a
provider or downloads anything. Work that needs the network is queued, after commit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from imagen_assets import activity, conf, jobs, prompts, queueing, quotas
from imagen_assets import review as review_rules
from imagen_assets.activity import Actor
from imagen_assets.models import (
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    PromptTemplate,
    ReviewDecision,
    StylePreset,
)
from imagen_assets.money import dollars
from imagen_assets.providers import GenerationParams, Provider, get_provider
from imagen_assets.review import ReviewError as ReviewError  # re-exported: public
from imagen_assets.status import Decision

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    User = AbstractBaseUser | AnonymousUser

logger = logging.getLogger(__name__)

SEED_MAX = 2_147_483_647


class GenerationRequestError(ValueError):
    """The request cannot be carried out as asked; the message is meant for the user."""


class BudgetExceeded(GenerationRequestError):
    pass


class QuotaExceeded(GenerationRequestError):
    """The user's daily quota (images or dollars) would be exceeded; the message names the
    limit, what was used and when it resets."""


class PromptRefused(GenerationRequestError):
    """The prompt could not be composed: a banned term (``term`` names it), a template's
    placeholders not filled as they must be, or nothing written."""

    def __init__(self, error: prompts.PromptError) -> None:
        super().__init__(str(error))
        self.error = error
        self.term: str | None = getattr(error, "term", None)


@dataclass(frozen=True)
class Spend:
    """A campaign's committed spend against its budget: the one place budget arithmetic lives.

    ``committed`` is what :meth:`Campaign.committed_spend` (or the ``committed`` annotation of
    ``with_stats()``) returns; ``budget`` is None when there is no limit. Amounts are exact
    decimals and every comparison here is exact. Stored amounts have at most four decimals, so
    the generate page's script, which counts whole ten-thousandths of a dollar, reaches the
    same verdict as :meth:`allows` for any price of at most four decimals.
    """

    committed: Decimal
    budget: Decimal | None

    @property
    def left(self) -> Decimal | None:
        """What may still be committed; never below zero, None without a budget."""
        if self.budget is None:
            return None
        return max(self.budget - self.committed, Decimal(0))

    @property
    def over(self) -> bool:
        """More is committed than the budget allows (actual costs and budget cuts do that)."""
        return self.budget is not None and self.committed > self.budget

    @property
    def percent(self) -> int | None:
        """How much of the budget is committed, 0 to 100; None without a budget.

        Anything committed shows at least 1 (a sliver rather than an empty bar); a zero
        budget is full as soon as anything is committed.
        """
        if self.budget is None:
            return None
        if self.committed <= 0:
            return 0
        if self.budget <= 0:
            return 100
        return max(1, min(100, int(self.committed * 100 / self.budget)))

    def allows(self, cost: Decimal) -> bool:
        """Whether committing ``cost`` more stays within the budget (spending it exactly does).

        A campaign already over its budget allows nothing more, not even a free request.
        """
        return self.budget is None or self.committed + cost <= self.budget


@dataclass(frozen=True)
class Estimate:
    provider: str
    count: int
    tasks: int
    price_per_image: Decimal
    total: Decimal


def split_into_tasks(count: int, per_task: int) -> list[int]:
    """Images per provider task, e.g. 10 at 4 per task -> [4, 4, 2]."""
    full, rest = divmod(count, per_task)
    return [per_task] * full + ([rest] if rest else [])


def enqueue_submits(task_ids: Sequence[int]) -> None:
    """Queue the submit job of each task (called once the tasks are committed).

    Redis refusing one (down, or stalled past its socket timeout) stops there: the request
    is not held up by a timeout per task, and the reconciler queues the rest.
    """
    for done, task_id in enumerate(task_ids):
        if not queueing.enqueue(jobs.submit, task_id):
            if len(task_ids) - done > 1:
                logger.error(
                    "Not queueing the other %d task(s) either; the reconciler will.",
                    len(task_ids) - done - 1,
                )
            return


def usable_provider(alias: str | None) -> Provider:
    """The provider for ``alias``, or a :class:`GenerationRequestError` saying why not."""
    try:
        provider = get_provider(alias or None)
    except ImproperlyConfigured as exc:
        raise GenerationRequestError(str(exc)) from exc
    missing = provider.missing_options()
    if missing:
        raise GenerationRequestError(
            _("Provider %(alias)s is not configured: set %(options)s.")
            % {"alias": provider.alias, "options": ", ".join(missing)}
        )
    return provider


def estimate(provider: str | None, count: int) -> Estimate:
    """Price of ``count`` images from ``provider`` at its configured per-image price."""
    backend = usable_provider(provider)
    with backend:
        price = backend.price_per_image
        tasks = len(split_into_tasks(count, backend.max_images_per_task))
        return Estimate(backend.alias, count, tasks, price, price * count)


def request_images(
    *,
    campaign: Campaign,
    prompt: str = "",
    count: int = 1,
    aspect_ratio: str | None = None,
    provider: str | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    user: User | None = None,
    origin: str = GenerationRequest.Origin.NEW,
    source_image: GeneratedImage | None = None,
    style_preset: StylePreset | None = None,
    template: PromptTemplate | None = None,
    template_values: dict[str, str] | None = None,
) -> list[GenerationTask]:
    """Create the request, the tasks and image rows for ``count`` images and queue their submission.

    Rows are committed before any job is queued, the campaign's budget is checked under a
    row lock (so two concurrent requests cannot both spend the last dollar), and each task
    gets its own seed (``seed``, ``seed + 1``, ...) so a batch is reproducible without
    producing the same picture over and over. Without ``seed`` a random one is chosen here
    rather than by the provider, so every image records the seed that made it.

    The final prompt is :func:`imagen_assets.prompts.compose_prompt`'s (``template`` filled
    with ``template_values``, ``style_preset``, the campaign's and its brand's words); a
    banned term or a placeholder not filled refuses the request before anything is saved.
    Without ``aspect_ratio`` or ``negative_prompt``, the campaign's (else its brand's) apply.
    """
    try:
        composed = prompts.compose_prompt(campaign, prompt, style_preset, template, template_values)
    except prompts.PromptError as exc:
        raise PromptRefused(exc) from None
    limit = conf.get("MAX_IMAGES_PER_REQUEST")
    if not 1 <= count <= limit:
        raise GenerationRequestError(
            _("Ask for between 1 and %(limit)d images.") % {"limit": limit}
        )
    backend = usable_provider(provider or campaign.default_provider or None)
    with backend:
        aspect_ratio = aspect_ratio or campaign.effective_aspect_ratio()
        if aspect_ratio not in backend.aspect_ratios:
            raise GenerationRequestError(
                _("%(provider)s does not offer the aspect ratio %(ratio)s.")
                % {"provider": backend.display_name, "ratio": aspect_ratio}
            )
        if negative_prompt is None:
            negative_prompt = campaign.effective_negative_prompt()
        negative_prompt = negative_prompt.strip()
        if negative_prompt and not backend.supports_negative_prompt:
            raise GenerationRequestError(
                _("%(provider)s does not accept a negative prompt; leave it empty.")
                % {"provider": backend.display_name}
            )
        if seed is not None and not 0 <= seed <= SEED_MAX:
            raise GenerationRequestError(
                _("The seed must be between 0 and %(max)d.") % {"max": SEED_MAX}
            )
        if seed is None:
            seed = secrets.randbelow(SEED_MAX + 1)
        sizes = split_into_tasks(count, backend.max_images_per_task)
        final_prompt = composed.final
        user_id = getattr(user, "pk", None)

        with transaction.atomic():
            locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
            try:
                review_rules.check_open_for_generation(locked)
            except ReviewError as exc:
                raise GenerationRequestError(str(exc)) from None
            cost = backend.price_per_image * count
            # Without a budget there is nothing to check, so no need to sum the spend.
            if locked.budget is not None:
                spend = Spend(committed=locked.committed_spend(), budget=locked.budget)
                if not spend.allows(cost):
                    raise BudgetExceeded(
                        _(
                            "This would cost $%(cost)s but only $%(left)s of the "
                            "$%(budget)s budget is left."
                        )
                        % {
                            "cost": f"{cost:.2f}",
                            "left": f"{spend.left:.2f}",
                            "budget": f"{locked.budget:.2f}",
                        }
                    )
            check_user_quota(user, count=count, cost=cost)
            request = GenerationRequest.objects.create(
                campaign=locked,
                prompt=composed.written,
                count=count,
                origin=origin,
                source_image=source_image,
                requested_by_id=user_id,
                style_preset=composed.preset,
                template_version=composed.template_version,
                template_values=composed.values,
            )
            tasks = []
            for position, size in enumerate(sizes):
                task_seed = (seed + position) % (SEED_MAX + 1)
                params = GenerationParams(
                    prompt=final_prompt,
                    aspect_ratio=aspect_ratio,
                    num_images=size,
                    seed=task_seed,
                    negative_prompt=negative_prompt,
                )
                tasks.append(
                    GenerationTask(
                        request=request,
                        campaign=locked,
                        provider=backend.alias,
                        model=backend.model,
                        prompt=final_prompt,
                        negative_prompt=negative_prompt,
                        aspect_ratio=aspect_ratio,
                        num_images=size,
                        seed=task_seed,
                        request_body=backend.request_body(params, callback_url=None),
                        estimated_cost=backend.price_per_image * size,
                        requested_by_id=user_id,
                    )
                )
            GenerationTask.objects.bulk_create(tasks)
            GeneratedImage.objects.bulk_create(
                GeneratedImage(task=task, campaign=locked, index=index)
                for task in tasks
                for index in range(task.num_images)
            )
            task_ids = [task.pk for task in tasks]
            activity.record(
                locked,
                activity.Verb.GENERATED,
                Actor.of(user),
                note=_("%(count)d image(s) on %(provider)s: %(prompt)s")
                % {"count": count, "provider": backend.display_name, "prompt": composed.written},
            )
            transaction.on_commit(lambda: enqueue_submits(task_ids))
    logger.info(
        "Queued %d image(s) in %d task(s) for campaign %s on %s",
        count,
        len(tasks),
        campaign.slug,
        backend.alias,
    )
    return tasks


def check_user_quota(user: User | None, *, count: int, cost: Decimal) -> None:
    """Refuse, with :class:`QuotaExceeded`, a request of ``count`` images costing ``cost``
    that would take ``user`` past their daily quota (:mod:`imagen_assets.quotas`).

    Call it once, inside the transaction that creates the tasks: it locks the user's row
    (``SELECT ... FOR UPDATE``) before counting what they used today, so two requests of the
    same user made at once are counted one after the other and cannot both pass the limit.
    Without a user (a host's own code) or without a limit it does nothing (and locks nothing).
    """
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return
    try:
        quota = quotas.quota_for(user_id)
    except ValueError:
        raise GenerationRequestError(
            _(
                "The site's daily quota is not set correctly (system check "
                "imagen_assets.E090 or E091); tell an admin. Nothing was spent."
            )
        ) from None
    if not quota.limited:
        return
    user_model = get_user_model()
    list(user_model._default_manager.select_for_update().filter(pk=user_id).values_list("pk"))
    used = quotas.used_today(user_id)
    resets = _("Your quota resets at midnight (%(zone)s).") % {"zone": quotas.zone_name()}
    if quota.images is not None and used.images + count > quota.images:
        refusal = ngettext(
            "You have used %(used)d of your %(limit)d image today; this asks for %(count)d.",
            "You have used %(used)d of your %(limit)d images today; this asks for %(count)d.",
            quota.images,
        ) % {"used": used.images, "limit": quota.images, "count": count}
        raise QuotaExceeded(f"{refusal} {resets}")
    if quota.spend is not None and used.spend + cost > quota.spend:
        refusal = _(
            "You have used %(used)s of your %(limit)s daily spend today; this would cost %(cost)s."
        ) % {"used": dollars(used.spend), "limit": dollars(quota.spend), "cost": dollars(cost)}
        raise QuotaExceeded(f"{refusal} {resets}")


def review(
    image_id: int, decision: Decision | str, *, user: User, note: str = ""
) -> GeneratedImage:
    """Record ``decision`` (approve, reject or revoke) by ``user`` on a ready image, under
    the campaign's review policy (:func:`imagen_assets.review.decide`). Raises
    :class:`ReviewError` saying why when it is refused; nothing is saved then."""
    return review_rules.decide(image_id, decision, Actor.of(user), note=note)


def approve_image(image_id: int, *, user: User, note: str = "") -> GeneratedImage:
    """Approve a ready image as ``user`` (one of the approvals its campaign requires)."""
    return review(image_id, Decision.APPROVE, user=user, note=note)


def reject_image(image_id: int, *, user: User, note: str) -> GeneratedImage:
    """Reject a ready image; a reason is required so the team learns from it."""
    return review(image_id, Decision.REJECT, user=user, note=note)


def review_many(
    image_ids: Sequence[int], decision: Decision | str, *, user: User, note: str = ""
) -> tuple[list[GeneratedImage], list[str]]:
    """Record ``decision`` on each image; returns (reviewed, error messages).

    An image that cannot be reviewed is skipped with its reason; the others still are.
    """
    done: list[GeneratedImage] = []
    errors: list[str] = []
    for image_id in image_ids:
        try:
            done.append(review(image_id, decision, user=user, note=note))
        except ReviewError as exc:
            errors.append(str(exc))
    return done, errors


def for_summary(images: QuerySet[GeneratedImage]) -> QuerySet[GeneratedImage]:
    """``images`` with what :func:`image_summary` reads fetched along (task, campaign, and
    every review decision in order): a fixed number of queries for any number of images."""
    return images.select_related("task", "campaign").prefetch_related(
        Prefetch("decisions", queryset=ReviewDecision.objects.order_by("created_at", "pk"))
    )


def image_summary(image: GeneratedImage) -> dict[str, Any]:
    """The per-image view the CLI prints (``--json``) and tests assert on.

    ``approvals`` counts the approvals of the current round; ``reviews`` lists every
    decision of every round in order (``user`` is the username or the outside reviewer's
    address). Load images with :func:`for_summary`, or each summary costs more queries.
    """
    task = image.task
    decisions = list(image.decisions.all())
    return {
        "id": image.pk,
        "campaign": image.campaign.slug,
        "status": image.status,
        "review_status": image.review_status,
        "approvals": sum(
            1
            for row in decisions
            if row.round == image.review_round and row.decision == Decision.APPROVE
        ),
        "reviews": [
            {
                "user": row.reviewer_label,
                "decision": row.decision,
                "note": row.note,
                "at": row.created_at.isoformat(),
            }
            for row in decisions
        ],
        "provider": task.provider,
        "provider_task_id": task.provider_task_id or None,
        "task_status": task.status,
        "progress": task.progress,
        "model": task.model,
        "aspect_ratio": task.aspect_ratio,
        "seed": task.seed,
        "file": image.file.name or None,
        "width": image.width,
        "height": image.height,
        "bytes": image.bytes,
        "sha256": image.sha256 or None,
        "error": image.error_message or task.error_message or None,
    }
