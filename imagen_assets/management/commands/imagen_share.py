"""``manage.py imagen_share``: invite an outside reviewer to a campaign, or revoke a link."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagen_assets import conf, sharing
from imagen_assets.activity import Actor
from imagen_assets.management import cli
from imagen_assets.models import Campaign
from imagen_assets.review import ReviewError


class Command(BaseCommand):
    help = (
        "Create a signed link that lets ADDRESS review the campaign SLUG's images without an "
        "account, and print it; or revoke a link with --revoke ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="Campaign slug.")
        parser.add_argument("--email", help="The outside reviewer's address.")
        parser.add_argument(
            "--days",
            type=int,
            default=sharing.DEFAULT_DAYS,
            help=f"How long the link works (1 to {sharing.MAX_DAYS}; default "
            f"{sharing.DEFAULT_DAYS}).",
        )
        parser.add_argument("--revoke", type=int, metavar="ID", help="Revoke link ID instead.")
        parser.add_argument(
            "--user",
            help="Act as this user (who needs the share permission); default: a superuser.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        revoking = options["revoke"] is not None
        if revoking and (options["slug"] or options["email"]):
            raise cli.usage_error("--revoke takes no campaign or --email.")
        if not revoking and not (options["slug"] and options["email"]):
            raise cli.usage_error("Name the campaign (SLUG) and --email, or use --revoke ID.")
        actor = Actor(user=self._user(options["user"]))
        results = cli.Results(self, as_json=options["json"])
        if revoking:
            key: dict[str, Any] = {"id": options["revoke"]}
            try:
                link = sharing.revoke_link(options["revoke"], actor)
            except ReviewError as exc:
                results.refused(key, str(exc))
            else:
                results.done(
                    key,
                    f"Link #{link.pk} revoked.",
                    revoked_at=link.revoked_at.isoformat() if link.revoked_at else None,
                )
            results.finish()
            return
        key = {"campaign": options["slug"]}
        campaign = Campaign.objects.filter(slug=options["slug"]).first()
        try:
            if campaign is None:
                raise ReviewError(f"There is no campaign {options['slug']!r}.")
            shared = sharing.share(campaign.pk, actor, options["email"], days=options["days"])
        except ReviewError as exc:
            results.refused(key, str(exc))
            results.finish()
            return
        link = shared.link
        results.done(
            key,
            f"Link #{link.pk} for {link.email} on {campaign.slug}, until "
            f"{link.expires_at:%Y-%m-%d %H:%M %Z}:\n{shared.url}",
            id=link.pk,
            email=link.email,
            expires_at=link.expires_at.isoformat(),
            url=shared.url,
        )
        if not conf.get("SITE_URL"):
            self.stderr.write(
                "IMAGEN_ASSETS['SITE_URL'] is not set: the link is a path; put the site's "
                "address in front of it."
            )
        results.finish()

    def _user(self, username: str | None) -> Any:
        if username:
            return cli.get_user(username)
        users = get_user_model()._default_manager
        user = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("No active superuser exists; name one with --user USERNAME.")
        return user
