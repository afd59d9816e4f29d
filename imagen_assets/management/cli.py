"""What every workflow command shares: acting as a user, one result per line, exit codes.

A command that acts on several things (images, a campaign) reports each one through a
:class:`Results`: a line of text, or with ``--json`` one JSON object per line with
``"ok": true`` or ``"ok": false`` and ``"error"``. Every refusal's reason also goes to
stderr. The command exits 0 when everything asked was done and 1 when any part was refused
(the other parts are still done)::

    def add_arguments(self, parser):
        cli.add_user_arguments(parser)

    def handle(self, *args, **options):
        user = cli.get_user(options["user"])
        results = cli.Results(self, as_json=options["json"])
        for image_id in options["image_ids"]:
            try:
                ...
            except ReviewError as exc:
                results.refused({"id": image_id}, str(exc))
            else:
                results.done({"id": image_id}, _("Image #%(id)d approved.") % ...)
        results.finish()
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext


def add_user_arguments(parser: CommandParser, *, user_required: bool = True) -> None:
    """Add ``--user USERNAME`` (who acts) and ``--json`` (one JSON object per line)."""
    parser.add_argument(
        "--user",
        required=user_required,
        metavar="USERNAME",
        help=_("Act as this user (their permissions apply and the log names them)."),
    )
    parser.add_argument("--json", action="store_true", help=_("Print one JSON object per line."))


def get_user(username: str) -> Any:
    """The user whose ``USERNAME_FIELD`` is ``username``; a :class:`CommandError` naming it
    when there is none (an inactive user is returned: the rules refuse what they may not do,
    saying why)."""
    User = get_user_model()
    try:
        return User._default_manager.get(**{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        raise CommandError(_("There is no user %(name)r.") % {"name": username}) from None


def usage_error(message: str) -> CommandError:
    """An error in how the command was called (exit status 2, as argparse's own)."""
    return CommandError(message, returncode=2)


class Results:
    """Collects what a command did and refused, prints each as it comes, and decides the
    exit status in :meth:`finish`."""

    def __init__(self, command: BaseCommand, *, as_json: bool) -> None:
        self.command = command
        self.as_json = as_json
        self.succeeded = 0
        self.failed = 0

    def done(self, key: dict[str, Any], message: str, **data: Any) -> None:
        """Report one thing done: ``key`` identifies it (``{"id": 3}``, ``{"campaign":
        "spring"}``), ``message`` is the line of text, ``data`` extra JSON fields."""
        self.succeeded += 1
        if self.as_json:
            self._json({**key, "ok": True, **data})
        else:
            self.command.stdout.write(message)

    def refused(self, key: dict[str, Any], error: str) -> None:
        """Report one thing refused, with the reason in the user's words (also on stderr)."""
        self.failed += 1
        if self.as_json:
            self._json({**key, "ok": False, "error": error})
        self.command.stderr.write(error)

    def finish(self) -> None:
        """Return when nothing was refused; else raise :class:`CommandError` (exit 1)."""
        if self.failed:
            total = self.succeeded + self.failed
            raise CommandError(
                ngettext(
                    "%(failed)d of %(total)d was refused.",
                    "%(failed)d of %(total)d were refused.",
                    self.failed,
                )
                % {"failed": self.failed, "total": total},
                returncode=1,
            )

    def refuse_all(self, keys: list[dict[str, Any]], error: CommandError) -> NoReturn:
        """Nothing can be done at all (an unknown user or group): with ``--json`` each thing
        asked for gets its refused line; the command then exits 1 with ``error``'s reason
        (on stderr, once)."""
        if self.as_json:
            for key in keys:
                self._json({**key, "ok": False, "error": str(error)})
        raise CommandError(str(error), returncode=1)

    def _json(self, row: dict[str, Any]) -> None:
        self.command.stdout.write(json.dumps(row))
