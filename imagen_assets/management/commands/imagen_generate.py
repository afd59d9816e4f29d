"""``manage.py imagen_generate``: the command-line twin of the admin's "Generate images",
and with ``--from-csv FILE`` of its "Generate a batch" (the same CSV parser, the same
all-or-nothing batch; ``--dry-run`` prints the matrix and its price without spending)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import again, batches, conf, review, services
from imagen_assets.activity import Actor
from imagen_assets.forms import usable_providers
from imagen_assets.management import cli
from imagen_assets.models import (
    Campaign,
    GeneratedImage,
    GenerationRequest,
    PromptTemplate,
    StylePreset,
)
from imagen_assets.money import dollars, unit_price


class Command(BaseCommand):
    help = gettext_noop(
        "Queue images for a campaign (created if missing), requested by --user. With --wait, "
        "wait until every image is finished and exit non-zero if any failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument(
            "--campaign", help=_("Campaign slug (required unless --again is given).")
        )
        parser.add_argument(
            "--prompt",
            default="",
            help=_(
                "The prompt (with --template: words added after it); required unless "
                "--template or --again is given."
            ),
        )
        parser.add_argument("--style", help=_("A style preset of the campaign's brand, by name."))
        parser.add_argument(
            "--template", help=_("A prompt template of the campaign's brand, by name.")
        )
        parser.add_argument(
            "--value",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=_("What fills the template's {NAME}; once per placeholder."),
        )
        parser.add_argument(
            "--again",
            type=int,
            metavar="IMAGE_ID",
            help=_(
                "Make this image again: the same prompt, seed, aspect ratio and provider "
                "(Retry); with --more new seeds; with --provider the same seed elsewhere."
            ),
        )
        parser.add_argument(
            "--more", action="store_true", help=_("With --again: more like it, new seeds.")
        )
        parser.add_argument(
            "--from-csv",
            metavar="FILE",
            help=_(
                "A batch from a CSV file (UTF-8, header line: prompt, and optionally "
                "aspect_ratio, count, negative_prompt, alt_text), made at each --aspect-ratio "
                "(comma-separated) where a line names none, --count images per line and ratio "
                "where it names none. All of it or nothing."
            ),
        )
        parser.add_argument(
            "--provider", help=_("Provider alias (default: the campaign's, else the site's).")
        )
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument(
            "--aspect-ratio",
            help=_("1:1, 3:4, 4:3, 9:16 or 16:9 (with --from-csv, several: 1:1,16:9)."),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_("Print what would be made and its price; spend nothing."),
        )
        parser.add_argument("--seed", type=int)
        parser.add_argument("--negative-prompt")
        parser.add_argument("--wait", action="store_true", help=_("Wait for the images."))
        parser.add_argument("--timeout", type=float, default=600.0, help=_("Seconds to wait."))
        # Optional here (unlike the review commands): without it, nobody is recorded as
        # having asked, as before the workflow existed.
        cli.add_user_arguments(parser, user_required=False)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["again"] is not None:
            self._again(options)
            return
        if options["more"]:
            raise cli.usage_error(_("--more goes with --again IMAGE_ID."))
        if options["from_csv"] is not None and (options["prompt"] or options["template"]):
            raise cli.usage_error(
                _("--from-csv takes its prompts from the file: leave out --prompt and --template.")
            )
        if not options["campaign"] or not (
            options["prompt"] or options["template"] or options["from_csv"] is not None
        ):
            raise cli.usage_error(
                _(
                    "--campaign and --prompt (or --template, or --from-csv) are required "
                    "(or --again)."
                )
            )
        slug = slugify(options["campaign"])
        if not slug:
            raise cli.usage_error(_("--campaign must contain letters or digits."))
        results = cli.Results(self, as_json=options["json"])
        try:
            user = cli.get_user(options["user"]) if options["user"] is not None else None
        except CommandError as exc:
            results.refuse_all([{"campaign": slug}], exc)
        try:
            if user is not None:
                # Before the campaign is created: someone who may not generate makes nothing.
                review.check_may_generate(Actor.of(user))
            if options["dry_run"]:
                found = Campaign.objects.filter(slug=slug).first()
                campaign = found or Campaign(slug=slug, name=options["campaign"])
            else:
                campaign, created = Campaign.objects.get_or_create(
                    slug=slug, defaults={"name": options["campaign"], "created_by": user}
                )
                if created and not options["json"]:
                    self.stdout.write(_("Created campaign %(slug)r.") % {"slug": slug})
            lines = self._lines(options, *self._brand_kit(campaign, options))
            batch = options["from_csv"] is not None
            plan = services.plan_request(
                campaign=campaign,
                lines=lines,
                provider=options["provider"],
                max_images=conf.get("MAX_IMAGES_PER_BATCH") if batch else None,
            )
            if batch or options["dry_run"]:
                self._print_plan(plan, lines, as_json=options["json"], dry_run=options["dry_run"])
            if options["dry_run"]:
                if campaign.pk is not None:
                    self._check_budget(campaign, plan)
                return
            tasks = services.create_request(
                plan,
                seed=options["seed"],
                user=user,
                origin=GenerationRequest.Origin.BATCH if batch else GenerationRequest.Origin.NEW,
            )
        except (services.GenerationRequestError, review.ReviewError) as exc:
            results.refused({"campaign": slug}, str(exc))
            results.finish()
            return
        self._follow(tasks, options)

    def _again(self, options: dict[str, Any]) -> None:
        """``--again IMAGE_ID [--more | --provider ALIAS]``: the admin's Generate again."""
        results = cli.Results(self, as_json=options["json"])
        key = {"again": options["again"]}
        if options["more"] and options["provider"]:
            raise cli.usage_error(_("Use --more or --provider with --again, not both."))
        image = (
            GeneratedImage.objects.filter(pk=options["again"])
            .select_related("task__request", "campaign")
            .first()
        )
        if image is None:
            results.refused(key, _("There is no image #%(id)d.") % {"id": options["again"]})
            results.finish()
            return
        mode = "more" if options["more"] else "other" if options["provider"] else "retry"
        try:
            user = cli.get_user(options["user"]) if options["user"] is not None else None
            if user is not None:
                review.check_may_generate(Actor.of(user))
            made = again.prefill(
                image, mode, provider=options["provider"], usable=usable_providers()
            )
            tasks = services.request_images(**made.request_kwargs(), user=user)
        except (
            again.AgainError,
            services.GenerationRequestError,
            review.ReviewError,
            CommandError,
        ) as exc:
            results.refused(key, str(exc))
            results.finish()
            return
        if not options["json"]:
            for note in made.notes:
                self.stdout.write(note)
        self._follow(tasks, options)

    def _follow(self, tasks: list[Any], options: dict[str, Any]) -> None:
        images = GeneratedImage.objects.filter(task__in=tasks)
        if not options["json"]:
            self.stdout.write(
                _("Queued %(count)d image(s) in %(tasks)d task(s) on %(provider)s.")
                % {
                    "count": sum(task.num_images for task in tasks),
                    "tasks": len(tasks),
                    "provider": tasks[0].provider,
                }
            )
        if options["wait"]:
            deadline = time.monotonic() + options["timeout"]
            while images.unfinished().exists():
                if time.monotonic() > deadline:
                    self._report(images, options["json"])
                    raise CommandError(
                        _(
                            "Gave up waiting after %(seconds)g s; is a worker running "
                            "(manage.py rqworker --with-scheduler)?"
                        )
                        % {"seconds": options["timeout"]}
                    )
                time.sleep(0.1)
        self._report(images, options["json"])
        if options["wait"]:
            Status = GeneratedImage.Status
            withheld = images.filter(status=Status.FILTERED).count()
            if withheld:
                # Not a failure: the provider's safety filter kept them back (not charged).
                self.stderr.write(
                    _("%(count)d image(s) withheld by the provider's safety filter.")
                    % {"count": withheld}
                )
            failed = images.filter(status__in=[Status.FAILED, Status.CANCELLED]).count()
            if failed:
                raise CommandError(
                    _("%(count)d image(s) did not succeed (failed or cancelled).")
                    % {"count": failed}
                )

    def _brand_kit(
        self, campaign: Campaign, options: dict[str, Any]
    ) -> tuple[StylePreset | None, PromptTemplate | None, dict[str, str] | None]:
        """The --style and --template named, from the campaign's brand, and the --value
        pairs; a :class:`services.GenerationRequestError` saying what is wrong."""
        values: dict[str, str] = {}
        for pair in options["value"]:
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise services.GenerationRequestError(
                    _("--value takes NAME=VALUE, not %(pair)r.") % {"pair": pair}
                )
            values[name.strip()] = value
        style = template = None
        brand = campaign.brand
        if brand is None and (options["style"] or options["template"]):
            raise services.GenerationRequestError(
                _("Campaign %(slug)s has no brand, so no style presets or templates.")
                % {"slug": campaign.slug}
            )
        if brand is not None and options["style"]:
            style = brand.presets.filter(name=options["style"]).first()
            if style is None:
                raise services.GenerationRequestError(
                    _("The brand %(brand)s has no style preset %(name)r.")
                    % {"brand": brand, "name": options["style"]}
                )
        if brand is not None and options["template"]:
            template = brand.templates.filter(name=options["template"]).first()
            if template is None:
                raise services.GenerationRequestError(
                    _("The brand %(brand)s has no prompt template %(name)r.")
                    % {"brand": brand, "name": options["template"]}
                )
        return style, template, values or None

    def _lines(
        self,
        options: dict[str, Any],
        style: StylePreset | None,
        template: PromptTemplate | None,
        values: dict[str, str] | None,
    ) -> list[services.ImageLine]:
        """The request's lines: the one ``--prompt`` (or ``--template``), or the CSV's times
        the ratios; ``--style`` applies to every line."""
        if options["from_csv"] is None:
            if options["seed"] is not None and not 0 <= options["seed"] <= services.SEED_MAX:
                raise services.GenerationRequestError(
                    _("The seed must be between 0 and %(max)d.") % {"max": services.SEED_MAX}
                )
            return [
                services.ImageLine(
                    prompt=options["prompt"],
                    count=options["count"],
                    aspect_ratio=options["aspect_ratio"],
                    negative_prompt=options["negative_prompt"],
                    style_preset=style,
                    template=template,
                    template_values=values,
                )
            ]
        path = Path(options["from_csv"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise cli.usage_error(
                _("Cannot read %(file)s: %(reason)s") % {"file": path, "reason": exc.strerror}
            ) from None
        try:
            rows = batches.parse_csv(data)
        except batches.BatchParseError as exc:
            raise services.GenerationRequestError(
                _("%(file)s cannot be used:") % {"file": path} + "\n" + str(exc)
            ) from None
        ratios = [
            ratio.strip() for ratio in (options["aspect_ratio"] or "").split(",") if ratio.strip()
        ]
        lines = batches.expand(
            rows,
            aspect_ratios=ratios or [None],
            count=options["count"],
            negative_prompt=options["negative_prompt"],
        )
        return [dataclasses.replace(line, style_preset=style) for line in lines]

    def _print_plan(
        self,
        plan: services.Plan,
        lines: list[services.ImageLine],
        *,
        as_json: bool,
        dry_run: bool,
    ) -> None:
        """The matrix (prompts down, aspect ratios across) and the price of all of it."""
        grid = batches.matrix(
            services.ImageLine(
                prompt=line.prompt, count=line.count, aspect_ratio=line.aspect_ratio, line=line.line
            )
            for line in plan.lines
        )
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "campaign": plan.campaign.slug,
                        "dry_run": dry_run,
                        "provider": plan.provider,
                        "ratios": list(grid.ratios),
                        "rows": [
                            {"line": row.line, "prompt": row.prompt, "images": list(row.cells)}
                            for row in grid.rows
                        ],
                        "images": plan.count,
                        "tasks": plan.tasks,
                        "price_per_image": str(plan.price_per_image),
                        "cost": f"{plan.cost:.2f}",
                    },
                    ensure_ascii=False,
                )
            )
            return
        width = [max(5, len(ratio)) for ratio in grid.ratios]
        head = [f"{_('line'):>5}", *(f"{r:>{w}}" for r, w in zip(grid.ratios, width, strict=True))]
        self.stdout.write("  ".join([*head, f"{_('images'):>6}", _("prompt")]))
        for row in grid.rows:
            cells = [f"{n or '-':>{w}}" for n, w in zip(row.cells, width, strict=True)]
            prompt = " ".join(row.prompt.split())
            prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
            line = "" if row.line is None else str(row.line)
            self.stdout.write("  ".join([f"{line:>5}", *cells, f"{row.total:>6}", prompt]))
        totals = [f"{n:>{w}}" for n, w in zip(grid.column_totals, width, strict=True)]
        self.stdout.write("  ".join([f"{_('total'):>5}", *totals, f"{grid.total:>6}"]))
        self.stdout.write(
            _(
                "%(count)d image(s) in %(tasks)d task(s) on %(provider)s at %(price)s each: "
                "%(cost)s."
            )
            % {
                "count": plan.count,
                "tasks": plan.tasks,
                "provider": plan.provider_name,
                "price": unit_price(plan.price_per_image),
                "cost": dollars(plan.cost),
            }
        )
        campaign = plan.campaign
        if campaign.pk is not None and campaign.budget is not None:
            spend = services.Spend(committed=campaign.committed_spend(), budget=campaign.budget)
            self.stdout.write(
                _("Budget left: %(left)s of %(budget)s.")
                % {"left": dollars(spend.left), "budget": dollars(campaign.budget)}
            )
        if dry_run:
            self.stdout.write(_("Dry run: nothing was queued or spent."))

    def _check_budget(self, campaign: Campaign, plan: services.Plan) -> None:
        """A dry run says when the real run would be refused for its budget (exit 1)."""
        spend = services.Spend(committed=campaign.committed_spend(), budget=campaign.budget)
        if not spend.allows(plan.cost):
            raise CommandError(
                _("%(campaign)s: %(reason)s")
                % {"campaign": campaign, "reason": services.budget_refusal(spend, plan.cost)},
                returncode=1,
            )

    def _report(self, images: Any, as_json: bool) -> None:
        for image in services.for_summary(images.order_by("task_id", "index")):
            summary = services.image_summary(image)
            if as_json:
                self.stdout.write(json.dumps(summary))
            else:
                size = f"{summary['width']}x{summary['height']}" if summary["width"] else "-"
                self.stdout.write(
                    f"#{summary['id']:<6} {summary['status']:<10} {summary['provider']:<10} "
                    f"{size:<10} {summary['file'] or summary['error'] or ''}"
                )
