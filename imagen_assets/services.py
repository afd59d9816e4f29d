"""What users can do: ask for images, review them. Every change is atomic and locks its rows.

The admin, the command line and host projects call these functions; none of them talks to a
provider or downloads anything. Work that needs the network is queued, after commit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext as _

from imagen_assets import activity, capacity, conf, jobs, prompts, quotas
from imagen_assets import review as review_rules
from imagen_assets.activity import Actor
from imagen_assets.alt_text import MAX_LENGTH as ALT_TEXT_MAX_LENGTH
from imagen_assets.alt_text import draft as draft_alt_text
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
from imagen_assets.status import CampaignStatus, Decision

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

    def __init__(self, error: prompts.PromptError, message: str | None = None) -> None:
        super().__init__(message or str(error))
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


def enqueue_submits(task_ids: Sequence[int], provider: str) -> None:
    """Queue the submits of a request's tasks (called once they are committed): together,
    several to a job (:func:`jobs.submit_many`). With a concurrency cap, only as many as
    the provider has free slots, oldest waiting tasks first; the rest are sent as slots
    free up (:mod:`imagen_assets.capacity`).

    Redis refusing one (down, or stalled past its socket timeout) stops there: the request
    is not held up by a timeout per job, and the reconciler queues the rest.
    """
    if capacity.cap_of(provider) is not None:
        task_ids = capacity.waiting_to_send(provider)
    if task_ids and not jobs.queue_submits(task_ids):
        logger.error("Could not queue every submit; the reconciler will queue the rest.")


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


@dataclass(frozen=True)
class ImageLine:
    """One line of a request: ``count`` images of one prompt at one aspect ratio.

    ``aspect_ratio`` and ``negative_prompt`` None mean the campaign's defaults; ``alt_text``
    empty means drafted from the prompt; ``line`` is where the line came from (a batch's
    text or CSV line), named in every refusal about it.
    """

    prompt: str
    count: int = 1
    aspect_ratio: str | None = None
    negative_prompt: str | None = None
    alt_text: str = ""
    line: int | None = None
    #: The brand kit's parts (:func:`imagen_assets.prompts.compose_prompt`): a style preset,
    #: a prompt template and what fills its placeholders (``prompt`` is then optional).
    style_preset: StylePreset | None = None
    template: PromptTemplate | None = None
    template_values: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PlannedLine:
    """An :class:`ImageLine` checked against the campaign and the provider."""

    prompt: str
    final_prompt: str
    count: int
    aspect_ratio: str
    negative_prompt: str
    alt_text: str
    line: int | None
    #: Images per provider task of this line, e.g. [4, 4, 2].
    sizes: tuple[int, ...]
    #: How the prompt was made (template version, preset, values), recorded on the request.
    composed: prompts.ComposedPrompt


@dataclass(frozen=True)
class Plan:
    """What a request will make and cost, before anything is written or spent."""

    campaign: Campaign
    provider: str
    provider_name: str
    model: str
    price_per_image: Decimal
    lines: tuple[PlannedLine, ...]

    @property
    def count(self) -> int:
        return sum(line.count for line in self.lines)

    @property
    def tasks(self) -> int:
        return sum(len(line.sizes) for line in self.lines)

    @property
    def cost(self) -> Decimal:
        return self.price_per_image * self.count


def _on_line(line: int | None, message: str) -> str:
    """``message`` about a batch's line, naming it ("Line 3: ...")."""
    if line is None:
        return message
    return _("Line %(line)d: %(message)s") % {"line": line, "message": message}


def plan_request(
    *,
    campaign: Campaign,
    lines: Sequence[ImageLine],
    provider: str | None = None,
    max_images: int | None = None,
) -> Plan:
    """Check ``lines`` against the campaign and the provider (its aspect ratios, negative
    prompts, the limits) and price them; nothing is written. Raises
    :class:`GenerationRequestError` naming the first line refused.

    Each line may ask for 1 to ``MAX_IMAGES_PER_REQUEST`` images; all lines together for at
    most ``max_images`` (default ``MAX_IMAGES_PER_REQUEST``; a batch passes
    ``MAX_IMAGES_PER_BATCH``). The budget is checked by :func:`create_request`, under lock.
    """
    if not lines:
        raise GenerationRequestError(_("Write a prompt."))
    per_line = conf.get("MAX_IMAGES_PER_REQUEST")
    composed: list[prompts.ComposedPrompt] = []
    for line in lines:
        try:
            composed.append(
                prompts.compose_prompt(
                    campaign, line.prompt, line.style_preset, line.template, line.template_values
                )
            )
        except prompts.PromptError as exc:
            raise PromptRefused(exc, _on_line(line.line, str(exc))) from None
        if not 1 <= line.count <= per_line:
            raise GenerationRequestError(
                _on_line(
                    line.line,
                    _("Ask for between 1 and %(limit)d images.") % {"limit": per_line},
                )
            )
    backend = usable_provider(provider or campaign.default_provider or None)
    planned: list[PlannedLine] = []
    with backend:
        for line, made in zip(lines, composed, strict=True):
            prompt = made.written
            ratio = line.aspect_ratio or campaign.effective_aspect_ratio()
            if ratio not in backend.aspect_ratios:
                raise GenerationRequestError(
                    _on_line(
                        line.line,
                        _("%(provider)s does not offer the aspect ratio %(ratio)s.")
                        % {"provider": backend.display_name, "ratio": ratio},
                    )
                )
            negative = line.negative_prompt
            if negative is None:
                negative = campaign.effective_negative_prompt()
            negative = negative.strip()
            if negative and not backend.supports_negative_prompt:
                raise GenerationRequestError(
                    _on_line(
                        line.line,
                        _("%(provider)s does not accept a negative prompt; leave it empty.")
                        % {"provider": backend.display_name},
                    )
                )
            alt = (line.alt_text or "").strip()[:ALT_TEXT_MAX_LENGTH]
            planned.append(
                PlannedLine(
                    prompt=prompt,
                    final_prompt=made.final,
                    count=line.count,
                    aspect_ratio=ratio,
                    negative_prompt=negative,
                    alt_text=alt or draft_alt_text(prompt) or gettext("Generated image"),
                    line=line.line,
                    sizes=tuple(split_into_tasks(line.count, backend.max_images_per_task)),
                    composed=made,
                )
            )
        plan = Plan(
            campaign=campaign,
            provider=backend.alias,
            provider_name=backend.display_name,
            model=backend.model,
            price_per_image=backend.price_per_image,
            lines=tuple(planned),
        )
    limit = per_line if max_images is None else max_images
    if plan.count > limit:
        raise GenerationRequestError(
            _("This asks for %(count)d images; at most %(limit)d may be asked for at once.")
            % {"count": plan.count, "limit": limit}
        )
    return plan


def _check_spend(locked: Campaign, cost: Decimal) -> None:
    """Refuse spending ``cost`` more on ``locked`` (the campaign's row, locked by the caller)
    when it is over its budget. The one place the budget of a request
    is checked: every request, single or batch, comes through here once, under the lock."""
    # Without a budget there is nothing to check, so no need to sum the spend.
    if locked.budget is not None:
        spend = Spend(committed=locked.committed_spend(), budget=locked.budget)
        if not spend.allows(cost):
            raise BudgetExceeded(budget_refusal(spend, cost))


def budget_refusal(spend: Spend, cost: Decimal) -> str:
    """Why ``cost`` more is refused under ``spend`` (a budget it does not fit)."""
    return _("This would cost %(cost)s but only %(left)s of the %(budget)s budget is left.") % {
        "cost": dollars(cost),
        "left": dollars(spend.left or 0),
        "budget": dollars(spend.budget or 0),
    }


def create_request(
    plan: Plan,
    *,
    seed: int | None = None,
    user: User | None = None,
    origin: str = GenerationRequest.Origin.NEW,
    source_image: GeneratedImage | None = None,
    batch_key: str | None = None,
) -> list[GenerationTask]:
    """Write ``plan``: one request, its tasks and their image rows, all or nothing.

    ``batch_key`` names the confirmed preview a batch comes from: a second request with the
    same key (the same preview confirmed twice) is refused and makes nothing.

    Under the campaign's row lock the campaign must be open for generation and the whole
    plan within what may be spent (:func:`_check_spend`), so two concurrent requests cannot
    both spend the last dollar and a batch is never made in part. Each task gets its own
    seed (``seed``, ``seed + 1``, ... across all lines), so a request is reproducible
    without producing the same picture over and over; without ``seed`` a random one is
    chosen here rather than by the provider, so every image records the seed that made it.
    Jobs are queued once the rows are committed.
    """
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise GenerationRequestError(
            _("The seed must be between 0 and %(max)d.") % {"max": SEED_MAX}
        )
    if seed is None:
        seed = secrets.randbelow(SEED_MAX + 1)
    campaign = plan.campaign
    user_id = getattr(user, "pk", None)
    backend = usable_provider(plan.provider)
    with backend, transaction.atomic():
        price = backend.price_per_image
        # The user's row first, then the campaign's: every request takes its locks in that
        # order, so the generate page's several campaigns in one transaction cannot deadlock
        # with the same user's single request (A, user, B against B, user).
        check_user_quota(user, count=plan.count, cost=price * plan.count)
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        try:
            review_rules.check_open_for_generation(locked)
        except ReviewError as exc:
            raise GenerationRequestError(str(exc)) from None
        if batch_key is not None:
            # Under the campaign's lock (a preview is for one campaign): two confirmations
            # of it at once are counted one after the other. The unique column backs it up.
            earlier = GenerationRequest.objects.filter(batch_key=batch_key).first()
            if earlier is not None:
                raise GenerationRequestError(
                    _("This batch was made already (request #%(id)d): its images are listed.")
                    % {"id": earlier.pk}
                )
        _check_spend(locked, price * plan.count)
        written = list(dict.fromkeys(line.prompt for line in plan.lines))
        # A one-line request records how its prompt was made; a batch's lines differ.
        made = plan.lines[0].composed if len(plan.lines) == 1 else None
        request = GenerationRequest.objects.create(
            campaign=locked,
            prompt="\n".join(written),
            count=plan.count,
            origin=origin,
            source_image=source_image,
            requested_by_id=user_id,
            style_preset=made.preset if made else None,
            template_version=made.template_version if made else None,
            template_values=made.values if made else {},
            batch_key=batch_key,
        )
        tasks: list[GenerationTask] = []
        alt_texts: list[str] = []
        for line in plan.lines:
            for size in line.sizes:
                task_seed = (seed + len(tasks)) % (SEED_MAX + 1)
                params = GenerationParams(
                    prompt=line.final_prompt,
                    aspect_ratio=line.aspect_ratio,
                    num_images=size,
                    seed=task_seed,
                    negative_prompt=line.negative_prompt,
                )
                tasks.append(
                    GenerationTask(
                        request=request,
                        campaign=locked,
                        provider=backend.alias,
                        model=backend.model,
                        written_prompt=line.prompt,
                        prompt=line.final_prompt,
                        negative_prompt=line.negative_prompt,
                        aspect_ratio=line.aspect_ratio,
                        num_images=size,
                        seed=task_seed,
                        request_body=backend.request_body(params, callback_url=None),
                        estimated_cost=price * size,
                        requested_by_id=user_id,
                    )
                )
                alt_texts.append(line.alt_text)
        GenerationTask.objects.bulk_create(tasks)
        GeneratedImage.objects.bulk_create(
            GeneratedImage(task=task, campaign=locked, index=index, alt_text=alt)
            for task, alt in zip(tasks, alt_texts, strict=True)
            for index in range(task.num_images)
        )
        task_ids = [task.pk for task in tasks]
        if len(plan.lines) == 1:
            note = _("%(count)d image(s) on %(provider)s: %(prompt)s") % {
                "count": plan.count,
                "provider": backend.display_name,
                "prompt": written[0],
            }
        else:
            note = _(
                "A batch of %(count)d image(s) from %(prompts)d prompt(s) at %(ratios)s "
                "on %(provider)s."
            ) % {
                "count": plan.count,
                "prompts": len(written),
                "ratios": ", ".join(dict.fromkeys(line.aspect_ratio for line in plan.lines)),
                "provider": backend.display_name,
            }
        activity.record(locked, activity.Verb.GENERATED, Actor.of(user), note=note)
        transaction.on_commit(lambda: enqueue_submits(task_ids, backend.alias))
    logger.info(
        "Queued %d image(s) in %d task(s) for campaign %s on %s",
        plan.count,
        len(tasks),
        campaign.slug,
        backend.alias,
    )
    return tasks


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
    alt_text: str = "",
) -> list[GenerationTask]:
    """Create the request, the tasks and image rows for ``count`` images and queue their
    submission: a one-line request (:func:`plan_request`, then :func:`create_request`,
    which checks the budget under the campaign's row lock).

    The final prompt is :func:`imagen_assets.prompts.compose_prompt`'s (``template`` filled
    with ``template_values``, ``style_preset``, the campaign's and its brand's words); a
    banned term or a placeholder not filled refuses the request before anything is saved.
    Without ``aspect_ratio`` or ``negative_prompt``, the campaign's (else its brand's) apply.
    """
    line = ImageLine(
        prompt=prompt,
        count=count,
        aspect_ratio=aspect_ratio,
        negative_prompt=negative_prompt,
        alt_text=alt_text,
        style_preset=style_preset,
        template=template,
        template_values=template_values,
    )
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise GenerationRequestError(
            _("The seed must be between 0 and %(max)d.") % {"max": SEED_MAX}
        )
    plan = plan_request(campaign=campaign, lines=[line], provider=provider)
    return create_request(plan, seed=seed, user=user, origin=origin, source_image=source_image)


def request_batch(
    *,
    campaign: Campaign,
    lines: Sequence[ImageLine],
    provider: str | None = None,
    seed: int | None = None,
    user: User | None = None,
    batch_key: str | None = None,
) -> list[GenerationTask]:
    """Create one request (origin "batch") for all ``lines``, all or nothing: up to
    ``MAX_IMAGES_PER_BATCH`` images, the whole batch's price checked against the budget
    under the campaign's row lock (nothing is made when it does not fit)."""
    plan = plan_request(
        campaign=campaign,
        lines=lines,
        provider=provider,
        max_images=conf.get("MAX_IMAGES_PER_BATCH"),
    )
    return create_request(
        plan, seed=seed, user=user, origin=GenerationRequest.Origin.BATCH, batch_key=batch_key
    )


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


#: Who may edit alt text besides an eligible reviewer of the campaign.
ALT_TEXT_PERMISSIONS = ("imagen_assets.change_generatedimage", "imagen_assets.generate_images")


def may_edit_alt_text(user: Any, image: GeneratedImage) -> bool:
    """Whether ``user`` may edit ``image``'s alt text: whoever may generate images or change
    them, or review its campaign."""
    if user is None or not getattr(user, "is_active", False):
        return False
    if any(user.has_perm(permission) for permission in ALT_TEXT_PERMISSIONS):
        return True
    return review_rules.may_review(Actor.of(user), image.campaign)


def set_alt_text(image_id: int, text: str, *, user: User) -> GeneratedImage:
    """Replace an image's alt text (never with nothing). Allowed on an approved image too:
    alt text describes the image, it is not the image, so its review, its campaign's
    sign-off and the exports holding it stay as they are. Logged as ``alt_text_changed``.
    Raises :class:`ReviewError` saying why when refused."""
    text = " ".join((text or "").split())
    if not text:
        raise ReviewError(_("Write the alt text: a few words saying what the image shows."))
    if len(text) > ALT_TEXT_MAX_LENGTH:
        raise ReviewError(
            _("Alt text is at most %(max)d characters (this is %(length)d).")
            % {"max": ALT_TEXT_MAX_LENGTH, "length": len(text)}
        )
    with transaction.atomic():
        try:
            image = (
                GeneratedImage.objects.select_for_update(of=("self",))
                .select_related("campaign")
                .get(pk=image_id)
            )
        except GeneratedImage.DoesNotExist:
            raise ReviewError(_("There is no image #%(id)d.") % {"id": image_id}) from None
        if not may_edit_alt_text(user, image):
            raise ReviewError(
                _("%(who)s may not edit the alt text of this image.")
                % {"who": Actor.of(user).label}
            )
        if image.campaign.status == CampaignStatus.ARCHIVED:
            raise ReviewError(_("%(campaign)s is archived.") % {"campaign": image.campaign})
        if text != image.alt_text:
            image.alt_text = text
            image.save(update_fields=["alt_text", "updated_at"])
            activity.record(
                image.campaign,
                activity.Verb.ALT_TEXT_CHANGED,
                Actor.of(user),
                image=image,
                note=text,
            )
    return image


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
