"""``manage.py imagen_review``: approve, reject or revoke the review of images, as a user."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import services
from imagen_assets.management import cli
from imagen_assets.models import GeneratedImage
from imagen_assets.review import ReviewError
from imagen_assets.status import Decision, ReviewStatus


class Command(BaseCommand):
    help = gettext_noop(
        "Record a review decision on each image, as --user, under its campaign's review "
        "policy. Exits 1 when any image was refused (the others are still decided)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument("image_ids", nargs="+", type=int, metavar="IMAGE_ID")
        decision = parser.add_mutually_exclusive_group(required=True)
        for value, help_text in (
            (Decision.APPROVE, _("Approve (one of the approvals the campaign requires).")),
            (Decision.REJECT, _("Reject; --note says why.")),
            (Decision.REVOKE, _("Revoke a decided review (back to pending); --note says why.")),
        ):
            decision.add_argument(
                f"--{value}",
                dest="decision",
                action="store_const",
                const=value,
                help=help_text,
            )
        parser.add_argument("--note", default="", help=_("Why (required to reject or revoke)."))
        cli.add_user_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        decision = Decision(options["decision"])
        note = options["note"].strip()
        if decision in (Decision.REJECT, Decision.REVOKE) and not note:
            raise cli.usage_error(
                _("--note is required with --%(decision)s: say why.") % {"decision": decision}
            )
        results = cli.Results(self, as_json=options["json"])
        try:
            user = cli.get_user(options["user"])
        except CommandError as exc:
            results.refuse_all(
                [{"id": image_id} for image_id in dict.fromkeys(options["image_ids"])], exc
            )
        for image_id in dict.fromkeys(options["image_ids"]):  # each once, in the given order
            key = {"id": image_id}
            try:
                image = services.review(image_id, decision, user=user, note=note)
            except ReviewError as exc:
                results.refused(key, str(exc))
            else:
                results.done(
                    key, self._describe(image, decision), review_status=image.review_status
                )
        results.finish()

    @staticmethod
    def _describe(image: GeneratedImage, decision: Decision) -> str:
        if decision is Decision.REVOKE:
            return _("Image #%(id)d: review revoked, pending again (round %(round)d).") % {
                "id": image.pk,
                "round": image.review_round,
            }
        if image.review_status == ReviewStatus.PENDING:
            approvals = image.decisions.filter(
                round=image.review_round, decision=Decision.APPROVE
            ).count()
            return _("Image #%(id)d: approval recorded, %(count)d of %(required)d needed.") % {
                "id": image.pk,
                "count": approvals,
                "required": image.campaign.required_approvals,
            }
        return _("Image #%(id)d: %(status)s.") % {
            "id": image.pk,
            "status": image.get_review_status_display().lower(),
        }
