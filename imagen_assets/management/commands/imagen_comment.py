"""``manage.py imagen_comment``: add a note to an image's thread, as a user."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.management import cli


class Command(BaseCommand):
    help = gettext_noop("Comment on an image, as --user (shown in its thread and log).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument("image_id", type=int, metavar="IMAGE_ID")
        parser.add_argument("--text", required=True, help=_("The comment."))
        cli.add_user_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        results = cli.Results(self, as_json=options["json"])
        key = {"id": options["image_id"]}
        try:
            user = cli.get_user(options["user"])
        except CommandError as exc:
            results.refuse_all([key], exc)
        try:
            comment = review.comment(options["image_id"], Actor.of(user), options["text"])
        except review.ReviewError as exc:
            results.refused(key, str(exc))
        else:
            results.done(
                key,
                _("Comment #%(comment)d added to image #%(id)d.")
                % {"comment": comment.pk, "id": options["image_id"]},
                comment=comment.pk,
            )
        results.finish()
