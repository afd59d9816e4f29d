"""``manage.py imagen_share``: invite an outside reviewer to a campaign, or revoke a link."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagen_assets import conf, sharing
from imagen_assets.activity import Actor
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
        actor = Actor(user=self._user(options["user"]))
        try:
            if options["revoke"] is not None:
                if options["slug"] or options["email"]:
                    raise CommandError("--revoke takes no campaign or --email.")
                link = sharing.revoke_link(options["revoke"], actor)
                self._print(options["json"], {"id": link.pk, "revoked_at": link.revoked_at})
                return
            if not options["slug"] or not options["email"]:
                raise CommandError("Name the campaign (SLUG) and --email, or use --revoke ID.")
            campaign = Campaign.objects.filter(slug=options["slug"]).first()
            if campaign is None:
                raise CommandError(f"There is no campaign {options['slug']!r}.")
            shared = sharing.share(campaign.pk, actor, options["email"], days=options["days"])
        except ReviewError as exc:
            raise CommandError(str(exc)) from exc
        link = shared.link
        self._print(
            options["json"],
            {
                "id": link.pk,
                "campaign": campaign.slug,
                "email": link.email,
                "expires_at": link.expires_at,
                "url": shared.url,
            },
        )
        if not conf.get("SITE_URL"):
            self.stderr.write(
                "IMAGEN_ASSETS['SITE_URL'] is not set: the link is a path; put the site's "
                "address in front of it."
            )

    def _print(self, as_json: bool, values: dict[str, Any]) -> None:
        if as_json:
            self.stdout.write(json.dumps(values, default=str))
        elif "url" in values:
            self.stdout.write(
                f"Link #{values['id']} for {values['email']} on {values['campaign']}, "
                f"until {values['expires_at']:%Y-%m-%d %H:%M %Z}:"
            )
            self.stdout.write(values["url"])
        else:
            self.stdout.write(f"Link #{values['id']} revoked.")

    def _user(self, username: str | None) -> Any:
        users = get_user_model()._default_manager
        if username:
            user = users.filter(**{users.model.USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"There is no user {username!r}.")
            return user
        user = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("No active superuser exists; name one with --user USERNAME.")
        return user
