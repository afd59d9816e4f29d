"""The campaign's "Generate a batch" page: prompts (typed, or a CSV file) times aspect
ratios, in two steps. The first shows the matrix (prompts x ratios x images), the price of
all of it and the budget left; nothing is spent until the second, "Generate", which makes
the whole batch or nothing (:func:`imagen_assets.services.request_batch`).

A mixin of :class:`~imagen_assets.admin.campaigns.CampaignAdmin`, beside its single
"Generate images" page. The preview carries the checked lines to the confirmation in a
signed field, so an uploaded file is read once and what is confirmed is what was shown.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext

from imagen_assets import batches, conf, services
from imagen_assets.admin.base import images_changelist_url, warn_about_providers
from imagen_assets.forms import GenerateBatchForm, usable_providers
from imagen_assets.models import Campaign
from imagen_assets.services import ImageLine
from imagen_assets.templatetags.imagen_admin import money, pixel_size

#: The salt of the preview's signed lines, and how long a preview may be confirmed.
SIGNING_SALT = "imagen_assets.batch"
PREVIEW_MAX_AGE = 60 * 60


def sign_batch(campaign: Campaign, plan: services.Plan, seed: int | None) -> str:
    """The preview's lines, provider, seed and price, signed for the confirmation."""
    return signing.dumps(
        {
            "campaign": campaign.pk,
            # One per preview: confirming the same preview twice makes one batch.
            "nonce": secrets.token_hex(16),
            "provider": plan.provider,
            "seed": seed,
            "cost": str(plan.cost),
            "lines": [
                [
                    line.prompt,
                    line.count,
                    line.aspect_ratio,
                    line.negative_prompt,
                    line.alt_text,
                    line.line,
                ]
                for line in plan.lines
            ],
        },
        salt=SIGNING_SALT,
        compress=True,
    )


def unsign_batch(token: str, campaign: Campaign) -> dict[str, Any]:
    """The payload of :func:`sign_batch`; :class:`signing.BadSignature` (or its subclass
    ``SignatureExpired``) when it was altered, is too old or is for another campaign."""
    payload: dict[str, Any] = signing.loads(token, salt=SIGNING_SALT, max_age=PREVIEW_MAX_AGE)
    if payload.get("campaign") != campaign.pk:
        raise signing.BadSignature("another campaign")
    payload["lines"] = [
        ImageLine(
            prompt=prompt,
            count=count,
            aspect_ratio=ratio,
            negative_prompt=negative,
            alt_text=alt,
            line=line,
        )
        for prompt, count, ratio, negative, alt, line in payload["lines"]
    ]
    return payload


#: The form's fields a preview carries back when the batch is changed (not the file).
CARRIED_FIELDS = ("prompts", "aspect_ratios", "count", "provider", "seed", "negative_prompt")


def carried(request: HttpRequest) -> dict[str, Any]:
    """The form's values posted back by a preview's "Change the batch" (empty on a GET)."""
    if request.method != "POST":
        return {}
    values: dict[str, Any] = {
        name: request.POST.get(name) for name in CARRIED_FIELDS if name in request.POST
    }
    if "aspect_ratios" in request.POST:
        values["aspect_ratios"] = request.POST.getlist("aspect_ratios")
    return values


class CampaignBatchMixin:
    """Adds the "Generate a batch" page to a campaign ModelAdmin (generate permission)."""

    admin_site: Any
    opts: Any
    media: Any
    get_object: Any
    message_user: Any
    batch_template = "imagen_assets/admin/generate_batch.html"

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("imagen_assets.generate_images"))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/generate-batch/",
                self.admin_site.admin_view(self.generate_batch_view),
                name="imagen_assets_campaign_generate_batch",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def generate_batch_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form. POST ``imagen_batch_preview``: the matrix and its price, or the
        form with what is wrong. POST ``imagen_batch_confirm``: the batch is made (all of
        it or nothing) and the images list opens; refused, the preview says why."""
        if not self.has_generate_permission(request):
            raise PermissionDenied
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(gettext("No campaign with this id."))
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if request.method == "POST" and "imagen_batch_confirm" in request.POST:
            return self._confirm_batch(request, campaign)
        previewing = request.method == "POST" and "imagen_batch_preview" in request.POST
        if previewing:
            form = GenerateBatchForm(request.POST, request.FILES, campaign=campaign)
        else:
            # "Change the batch" from a preview: its values again, not yet checked.
            form = GenerateBatchForm(initial=carried(request), campaign=campaign)
        if previewing and form.is_valid() and form.lines:
            try:
                plan = services.plan_request(
                    campaign=campaign,
                    lines=form.lines,
                    provider=form.cleaned_data["provider"],
                    max_images=conf.get("MAX_IMAGES_PER_BATCH"),
                )
            except services.GenerationRequestError as exc:
                form.add_error(None, str(exc))
            else:
                return self._render_batch(
                    request, campaign, form, plan=plan, seed=form.cleaned_data["seed"]
                )
        warn_about_providers(request)
        return self._render_batch(request, campaign, form)

    def _confirm_batch(self, request: HttpRequest, campaign: Campaign) -> HttpResponse:
        form = GenerateBatchForm(initial=carried(request), campaign=campaign)
        try:
            payload = unsign_batch(request.POST.get("batch", ""), campaign)
        except signing.BadSignature:
            self.message_user(
                request,
                gettext("This preview is too old or was altered: check the batch again."),
                messages.ERROR,
            )
            return self._render_batch(request, campaign, GenerateBatchForm(campaign=campaign))
        try:
            plan = services.plan_request(
                campaign=campaign,
                lines=payload["lines"],
                provider=payload["provider"],
                max_images=conf.get("MAX_IMAGES_PER_BATCH"),
            )
            if plan.cost != Decimal(payload["cost"]):
                self.message_user(
                    request,
                    gettext(
                        "The price changed since the preview (now %(cost)s): check it and "
                        "press Generate again."
                    )
                    % {"cost": money(plan.cost)},
                    messages.WARNING,
                )
                return self._render_batch(request, campaign, form, plan=plan, seed=payload["seed"])
            tasks = services.request_batch(
                campaign=campaign,
                lines=payload["lines"],
                provider=payload["provider"],
                seed=payload["seed"],
                user=request.user,
                batch_key=payload.get("nonce"),
            )
        except services.GenerationRequestError as exc:
            refusal = gettext("%(campaign)s: %(reason)s") % {"campaign": campaign, "reason": exc}
            try:
                plan = services.plan_request(
                    campaign=campaign,
                    lines=payload["lines"],
                    provider=payload["provider"],
                    max_images=conf.get("MAX_IMAGES_PER_BATCH"),
                )
            except services.GenerationRequestError:
                self.message_user(request, refusal, messages.ERROR)
                return self._render_batch(request, campaign, GenerateBatchForm(campaign=campaign))
            return self._render_batch(
                request, campaign, form, plan=plan, seed=payload["seed"], refusal=refusal
            )
        count = sum(task.num_images for task in tasks)
        self.message_user(
            request,
            ngettext(
                "Queued a batch of %(count)d image for %(campaign)s on %(provider)s.",
                "Queued a batch of %(count)d images for %(campaign)s on %(provider)s.",
                count,
            )
            % {"count": count, "campaign": campaign, "provider": plan.provider_name}
            + " "
            + gettext("They will appear here as they finish."),
            messages.SUCCESS,
        )
        return redirect(images_changelist_url(campaign__id__exact=campaign.pk))

    def _render_batch(
        self,
        request: HttpRequest,
        campaign: Campaign,
        form: GenerateBatchForm,
        *,
        plan: services.Plan | None = None,
        seed: int | None = None,
        refusal: str = "",
    ) -> HttpResponse:
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": gettext("Generate a batch"),
            "subtitle": str(campaign),
            "opts": self.opts,
            "campaign": campaign,
            "form": form,
            "prompt_shape": prompt_shape(campaign),
            "max_batch": conf.get("MAX_IMAGES_PER_BATCH"),
            "cancel_url": reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]),
            "media": self.media + form.media,
        }
        if plan is not None:
            context.update(self._preview_context(campaign, plan, seed, refusal))
            context["carried"] = self.carried_inputs(form)
        return TemplateResponse(request, self.batch_template, context)

    def _preview_context(
        self, campaign: Campaign, plan: services.Plan, seed: int | None, refusal: str
    ) -> dict[str, Any]:
        grid = batches.matrix(
            ImageLine(
                prompt=line.prompt, count=line.count, aspect_ratio=line.aspect_ratio, line=line.line
            )
            for line in plan.lines
        )
        option = usable_providers().get(plan.provider)
        sizes = option.sizes if option else {}
        spend = services.Spend(committed=campaign.committed_spend(), budget=campaign.budget)
        allowed = spend.allows(plan.cost)
        if not allowed and not refusal:
            refusal = gettext("%(campaign)s: %(reason)s") % {
                "campaign": campaign,
                "reason": services.budget_refusal(spend, plan.cost),
            }
        after = spend.left - plan.cost if spend.left is not None and allowed else None
        return {
            "plan": plan,
            "matrix": grid,
            "columns": [
                {"ratio": ratio, "size": pixel_size(*sizes[ratio]) if ratio in sizes else ""}
                for ratio in grid.ratios
            ],
            "prompts": len(grid.rows),
            "price_per_image": money(plan.price_per_image),
            "cost": money(plan.cost),
            "committed": money(spend.committed),
            "budget": money(spend.budget) if spend.budget is not None else None,
            "left": money(spend.left) if spend.left is not None else None,
            "left_after": money(after) if after is not None else None,
            "allowed": allowed and not refusal,
            "refusal": refusal,
            "seed": seed,
            "batch_token": sign_batch(campaign, plan, seed),
        }

    @staticmethod
    def carried_inputs(form: GenerateBatchForm) -> list[tuple[str, Any]]:
        """(name, value) of the hidden inputs that take the form's values back."""
        values = form.data if form.is_bound else form.initial
        pairs: list[tuple[str, Any]] = []
        for name in CARRIED_FIELDS:
            if name == "aspect_ratios":
                ratios = (
                    values.getlist(name) if hasattr(values, "getlist") else values.get(name, [])
                )
                pairs.extend((name, ratio) for ratio in ratios or [])
            elif values.get(name) not in (None, ""):
                pairs.append((name, values.get(name)))
        return pairs


def prompt_shape(campaign: Campaign) -> str:
    """What every prompt of a batch is sent as, with the brand kit's and the campaign's
    words around it ("" when it is sent as written): the one join, Campaign.build_prompt."""
    marker = "[" + gettext("each prompt") + "]"
    shaped = campaign.build_prompt(marker)
    return "" if shaped == marker else shaped
