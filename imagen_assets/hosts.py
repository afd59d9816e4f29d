"""Which hosts a provider's result URLs may point at (docs/reliability.md D1).

A result URL comes from the provider's answer (or a webhook), so it names whatever host the
answer says. Each provider has a short list of host patterns (``OPTIONS["RESULT_HOSTS"]``,
defaults per backend) plus its own API host; a URL on any other host is refused before any
DNS lookup or connection, on the first request and on every redirect hop.

Patterns: ``cdn.example.com`` (that host only), ``.example.com`` (the domain and every
subdomain, as in Django's ``ALLOWED_HOSTS``), ``*.example.com`` (subdomains only), an IP
address (``127.0.0.1``, ``::1`` or ``[::1]``), or ``*`` alone (any host: less safe, only
when configured explicitly). Host names are compared case-insensitively, without a trailing
dot; the port is not part of the match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.translation import gettext as _

#: The pattern that allows any host (must be configured explicitly).
ANY = "*"

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def _normal(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def matches(host: str, pattern: str) -> bool:
    """True when ``host`` (a URL's host name or IP address) is allowed by ``pattern``."""
    host, pattern = _normal(host), _normal(pattern)
    if not host or not pattern:
        return False
    if pattern == ANY:
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid result host pattern, or None when it is."""
    if not isinstance(pattern, str):
        return _("%(value)r is not a string") % {"value": pattern}
    text = _normal(pattern)
    if text == ANY:
        return None
    if not text:
        return _("an empty entry")
    if "/" in text or (":" in text and not _is_ip(text)):
        return _("%(value)r is not a host name: leave out the scheme, port and path") % {
            "value": pattern
        }
    if _is_ip(text):
        return None
    name = text.removeprefix("*.") if text.startswith("*.") else text.removeprefix(".")
    if "*" in name:
        return _("%(value)r: a wildcard may only be a leading '*.' or the whole entry '*'") % {
            "value": pattern
        }
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return _("%(value)r is not a valid host name") % {"value": pattern}
    if text.startswith((".", "*.")) and len(labels) < 2:
        return _("%(value)r would match every host under a top-level domain") % {"value": pattern}
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ResultHosts:
    """The patterns a provider's result URLs must match, and the setting that lists them
    (named in the refusal, so the admin knows what to widen)."""

    patterns: tuple[str, ...]
    setting: str

    @classmethod
    def of(cls, patterns: Iterable[str], setting: str) -> ResultHosts:
        return cls(tuple(patterns), setting)

    def allows(self, host: str) -> bool:
        return any(matches(host, pattern) for pattern in self.patterns)
