"""``manage.py imagen_campaign``: a campaign's sign-off steps and review policy, as a user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from imagen_assets import review
from imagen_assets.activity import Actor
from imagen_assets.management import cli
from imagen_assets.models import Campaign

#: The steps: what each flag calls (campaign id, actor, note) and the line it prints
#: (marked for translation here, translated when printed).
STEPS: dict[str, tuple[Callable[[int, Actor, str], Campaign], str]] = {
    "submit": (
        lambda pk, actor, note: review.submit(pk, actor),
        gettext_noop("%(campaign)s is in review."),
    ),
    "approve": (
        lambda pk, actor, note: review.sign_off(pk, actor, note=note),
        gettext_noop("%(campaign)s is signed off (approved)."),
    ),
    "request_changes": (
        lambda pk, actor, note: review.request_changes(pk, actor, note=note),
        gettext_noop("Changes requested in %(campaign)s."),
    ),
    "archive": (
        lambda pk, actor, note: review.archive(pk, actor, note=note),
        gettext_noop("%(campaign)s is archived."),
    ),
    "reopen": (
        lambda pk, actor, note: review.reopen(pk, actor, note=note),
        gettext_noop("%(campaign)s is reopened as a draft."),
    ),
}
POLICY_OPTIONS = ("required_approvals", "reviewer_group", "allow_self_approval")


class Command(BaseCommand):
    help = gettext_noop(
        "Move a campaign through its sign-off (submit, approve, request changes, archive, "
        "reopen) or change its review policy, as --user. Exits 1 when refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.description = _(self.help)  # marked above, translated when shown
        parser.add_argument("slug", metavar="SLUG", help=_("The campaign's slug."))
        step = parser.add_mutually_exclusive_group(required=True)
        for flag, help_text in (
            ("submit", _("Submit it for review (a draft or with changes requested).")),
            ("approve", _("Sign it off: nothing pending, at least one image approved.")),
            ("request-changes", _("Send it back to the team; --note says what to change.")),
            ("archive", _("Archive it (from any state).")),
            ("reopen", _("Take an approved or archived campaign back to draft.")),
            ("policy", _("Change its review policy with the options below.")),
        ):
            step.add_argument(
                f"--{flag}",
                dest="step",
                action="store_const",
                const=flag.replace("-", "_"),
                help=help_text,
            )
        parser.add_argument(
            "--note", help=_("A note for the log (required with --request-changes).")
        )
        policy = parser.add_argument_group(_("review policy (with --policy)"))
        policy.add_argument(
            "--required-approvals",
            type=int,
            metavar="N",
            help=_("How many different reviewers must approve each image (1 to 10)."),
        )
        policy.add_argument(
            "--reviewer-group",
            metavar="NAME",
            help=_('Only members of this group may review; "" lets anyone who may approve.'),
        )
        self_approval = policy.add_mutually_exclusive_group()
        self_approval.add_argument(
            "--allow-self-approval",
            dest="allow_self_approval",
            action="store_const",
            const=True,
            help=_("Let requesters approve their own images and submitters sign off."),
        )
        self_approval.add_argument(
            "--no-self-approval",
            dest="allow_self_approval",
            action="store_const",
            const=False,
            help=_("Four eyes: someone else must approve and sign off (the default)."),
        )
        cli.add_user_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        step = options["step"]
        note = (options["note"] or "").strip()
        policy = {name: options[name] for name in POLICY_OPTIONS if options[name] is not None}
        self._check_usage(step, note, options["note"] is not None, policy)
        results = cli.Results(self, as_json=options["json"])
        key = {"campaign": options["slug"]}
        try:
            user = cli.get_user(options["user"])
            if "reviewer_group" in policy:
                policy["reviewer_group"] = self._group(policy["reviewer_group"])
        except CommandError as exc:
            results.refuse_all([key], exc)
        campaign_id = (
            Campaign.objects.filter(slug=options["slug"]).values_list("pk", flat=True).first()
        )
        try:
            if campaign_id is None:
                raise review.ReviewError(
                    _("There is no campaign %(slug)r.") % {"slug": options["slug"]}
                )
            if step == "policy":
                campaign = review.set_policy(campaign_id, Actor.of(user), **policy)
            else:
                campaign = STEPS[step][0](campaign_id, Actor.of(user), note)
        except review.ReviewError as exc:
            results.refused(key, str(exc))
        else:
            if step == "policy":
                group = campaign.reviewer_group
                results.done(
                    key,
                    _(
                        "Review policy of %(campaign)s: %(count)d approval(s) per image, "
                        "reviewers: %(group)s, self-approval %(self)s."
                    )
                    % {
                        "campaign": campaign,
                        "count": campaign.required_approvals,
                        "group": group.name if group else _("anyone who may approve"),
                        "self": _("allowed") if campaign.allow_self_approval else _("not allowed"),
                    },
                    status=campaign.status,
                    required_approvals=campaign.required_approvals,
                    reviewer_group=group.name if group else None,
                    allow_self_approval=campaign.allow_self_approval,
                )
            else:
                results.done(
                    key, _(STEPS[step][1]) % {"campaign": campaign}, status=campaign.status
                )
        results.finish()

    @staticmethod
    def _check_usage(step: str, note: str, note_given: bool, policy: dict[str, Any]) -> None:
        """Refuse arguments that would be ignored or that a step cannot do without."""
        if step == "request_changes" and not note:
            raise cli.usage_error(_("--note is required with --request-changes: say what."))
        if note_given and step in ("submit", "policy"):
            raise cli.usage_error(
                _("--note is not taken with --%(step)s.") % {"step": step.replace("_", "-")}
            )
        if step == "policy" and not policy:
            raise cli.usage_error(
                _(
                    "--policy needs --required-approvals, --reviewer-group, "
                    "--allow-self-approval or --no-self-approval."
                )
            )
        if step != "policy" and policy:
            raise cli.usage_error(_("The review policy options go with --policy."))

    @staticmethod
    def _group(name: str) -> Group | None:
        """The group named ``name``; None for ""; a CommandError naming an unknown one."""
        if not name.strip():
            return None
        try:
            return Group.objects.get(name=name)
        except Group.DoesNotExist:
            raise CommandError(_("There is no group %(name)r.") % {"name": name}) from None
