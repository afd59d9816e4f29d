"""``manage.py imagen_generate``: the command-line twin of the admin's "Generate images"."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import again, review, services
from imagen_assets.activity import Actor
from imagen_assets.forms import usable_providers
from imagen_assets.management import cli
from imagen_assets.models import Campaign, GeneratedImage, PromptTemplate, StylePreset


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
            "--provider", help=_("Provider alias (default: the campaign's, else the site's).")
        )
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--aspect-ratio", help=_("1:1, 3:4, 4:3, 9:16 or 16:9."))
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
        if not options["campaign"] or not (options["prompt"] or options["template"]):
            raise cli.usage_error(
                _("--campaign and --prompt (or --template) are required (or --again).")
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
            campaign, created = Campaign.objects.get_or_create(
                slug=slug, defaults={"name": options["campaign"], "created_by": user}
            )
            if created and not options["json"]:
                self.stdout.write(_("Created campaign %(slug)r.") % {"slug": slug})
            style, template, values = self._brand_kit(campaign, options)
            tasks = services.request_images(
                campaign=campaign,
                style_preset=style,
                template=template,
                template_values=values,
                prompt=options["prompt"],
                count=options["count"],
                aspect_ratio=options["aspect_ratio"],
                provider=options["provider"],
                seed=options["seed"],
                negative_prompt=options["negative_prompt"],
                user=user,
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
                time.sleep(0.25)
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
