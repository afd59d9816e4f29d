"""``manage.py imagen_cancel``: the command-line twin of the admin's Cancel."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import cancels, review
from imagen_assets.activity import Actor
from imagen_assets.management import cli
from imagen_assets.models import GeneratedImage


class Command(BaseCommand):
    help = gettext_noop(
        "Cancel unfinished images (by id), or every unfinished image of their task "
        "(--task) or request (--request). Says what the provider may still charge."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument("image_ids", nargs="+", type=int, metavar="IMAGE_ID")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--task", action="store_true", help=_("Cancel the whole task of each image.")
        )
        scope.add_argument(
            "--request", action="store_true", help=_("Cancel the whole request of each image.")
        )
        cli.add_user_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        results = cli.Results(self, as_json=options["json"])
        keys = [{"id": image_id} for image_id in options["image_ids"]]
        try:
            user = cli.get_user(options["user"])
            review.check_may_generate(Actor.of(user))
        except (CommandError, review.ReviewError) as exc:
            results.refuse_all(keys, CommandError(str(exc)))
        scope = "task" if options["task"] else "request" if options["request"] else "image"
        for image_id in options["image_ids"]:
            image = GeneratedImage.objects.select_related("task").filter(pk=image_id).first()
            if image is None:
                results.refused(
                    {"id": image_id}, _("There is no image #%(id)d.") % {"id": image_id}
                )
                continue
            # As the admin's confirmation: only what can still be cancelled (a ready image
            # of the task or request is no refusal), or why nothing can.
            cancellable = cancels.open_in_scope(image, scope)
            if not cancellable:
                reason = cancels.refusal(image) or _("Nothing here is unfinished any more.")
                results.refused({"id": image_id}, reason)
                continue
            report = cancels.cancel([row.pk for row in cancellable], user=user)
            if report.cancelled:
                results.done(
                    {"id": image_id},
                    report.message,
                    cancelled=report.cancelled,
                    said=report.sentences,
                )
            for reason in report.refused:
                results.refused({"id": image_id}, reason)
        results.finish()
