"""The guarded download of a provider's output URL.

A result URL comes from outside, so it is treated as hostile: http(s) only; the host must
be one the provider serves its results from (:mod:`imagen_assets.hosts`, checked before
any DNS lookup); it is resolved once and every address must be public (no private,
loopback, link-local, ...) unless the host is allow-listed; we then connect to the address
we checked, so a second DNS answer cannot point us elsewhere; redirects are followed by
hand and checked the same way; the body is capped in bytes and the whole download in time;
environment proxies are ignored.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socket import EAI_AGAIN, gaierror
from urllib.parse import urljoin, urlsplit

import httpx
from django.utils.translation import gettext as _

from imagen_assets import __version__
from imagen_assets.hosts import ResultHosts
from imagen_assets.providers.http import DeadlineTransport, parse_retry_after
from imagen_assets.providers.http import deadline as total_deadline

MAX_REDIRECTS = 3

#: Answers of a result host that may succeed on a later try (row D10): the CDN is
#: overloaded, restarting or rate-limiting. The file is paid for, so they are retried.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Answers meaning the result URL no longer works (row D9): never retried.
EXPIRED_STATUSES = frozenset({403, 404, 410})

Resolver = Callable[[str, int], list[str]]


class DownloadError(Exception):
    """The output could not be fetched safely; the message is fit for the admin.

    ``transient`` marks failures that may succeed on a second try (timeout, dropped
    connection, a temporary DNS failure, HTTP 429 and 5xx); refusals (scheme, address,
    size, an expired URL) never will. ``retry_after``: seconds the host asked us to wait
    (``Retry-After``), if it did.
    """

    def __init__(
        self, message: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class Downloaded:
    content: bytes
    content_type: str
    url: str


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _is_public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return False
        # IPv6 forms that carry an IPv4 address are judged by that address.
        if ip in NAT64_WELL_KNOWN:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        elif ip.sixtofour:
            ip = ip.sixtofour
        elif ip.teredo:
            return _is_public(str(ip.teredo[1]))
    return ip.is_global and not ip.is_multicast


def _host_allowed(host: str, allow_hosts: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == allowed.lower().rstrip(".") for allowed in allow_hosts)


def _checked_address(
    url: str, hosts: ResultHosts, allow_hosts: Iterable[str], resolver: Resolver
) -> tuple[str, str]:
    """(host, address to connect to) for ``url``, or :class:`DownloadError`."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DownloadError(_("refused a malformed URL")) from None
    if parts.scheme not in ("http", "https"):
        raise DownloadError(
            _("refused a %(scheme)s URL; only http(s) is used")
            % {"scheme": parts.scheme or _("schemeless")}
        )
    host = parts.hostname
    if not host:
        raise DownloadError(_("refused a URL without a host"))
    if parts.username or parts.password:
        raise DownloadError(_("refused a URL with credentials in it"))
    if not hosts.allows(host):
        # Before any lookup or connection (row D1): the name alone decides.
        raise DownloadError(
            _(
                "refused %(host)s (untrusted host): the provider's results are not served "
                "from there; add it to %(setting)s if they really are"
            )
            % {"host": host, "setting": hosts.setting}
        )
    try:
        addresses = resolver(host, port)
    except gaierror as exc:
        if exc.errno == EAI_AGAIN:  # no answer from the DNS server, not "no such name"
            raise DownloadError(
                _("could not resolve %(host)s (temporary DNS failure)") % {"host": host},
                transient=True,
            ) from None
        raise _unresolved(host, exc) from None
    except (OSError, UnicodeError) as exc:
        raise _unresolved(host, exc) from None
    if not addresses:
        raise DownloadError(_("could not resolve %(host)s") % {"host": host})
    if not _host_allowed(host, allow_hosts):
        for address in addresses:
            if not _is_public(address):
                raise DownloadError(
                    _(
                        "refused %(host)s: it resolves to a non-public address (%(address)s); "
                        "add the host to IMAGEN_ASSETS['DOWNLOAD_ALLOW_HOSTS'] if it is trusted"
                    )
                    % {"host": host, "address": address}
                )
    return host, addresses[0]


def download(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    hosts: ResultHosts,
    allow_hosts: Iterable[str] = (),
    resolver: Resolver = resolve,
    transport: httpx.BaseTransport | None = None,
) -> Downloaded:
    """Fetch ``url`` under the rules above; raise :class:`DownloadError` on any breach.

    ``hosts``: where the provider serves its results; any other host, on the first request
    or a redirect, is refused before it is looked up.
    """
    allow_hosts = list(allow_hosts)
    deadline = time.monotonic() + timeout
    # The deadline transport gives every connect and read at most the time left, so a host
    # dripping its headers cannot hold the download past ``timeout`` (rows D10, P5).
    with (
        total_deadline(timeout),
        httpx.Client(
            trust_env=False,
            follow_redirects=False,
            transport=transport or DeadlineTransport(),
            headers={"User-Agent": f"imagen-assets/{__version__}"},
        ) as client,
    ):
        for _hop in range(MAX_REDIRECTS + 1):
            host, address = _checked_address(url, hosts, allow_hosts, resolver)
            parts = urlsplit(url)
            ip_host = f"[{address}]" if ":" in address else address
            netloc = ip_host + (f":{parts.port}" if parts.port else "")
            pinned = parts._replace(netloc=netloc).geturl()
            # Images are compressed already; an encoded body could decode to far more than
            # max_bytes before the cap is checked (a gzip bomb), so none is accepted.
            headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _gave_up(timeout)
            try:
                with client.stream(
                    "GET",
                    pinned,
                    headers=headers,
                    timeout=httpx.Timeout(remaining),
                    extensions={"sni_hostname": host},
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("Location", "")
                        if not location:
                            raise DownloadError("redirect without a Location header")
                        url = urljoin(url, location)
                        continue
                    if response.status_code != 200:
                        raise _answer_error(host, response)
                    encoding = response.headers.get("Content-Encoding", "").strip().lower()
                    if encoding not in ("", "identity"):
                        raise DownloadError(
                            _(
                                "%(host)s sent an encoded body (%(encoding)s); only plain "
                                "image bytes are accepted"
                            )
                            % {"host": host, "encoding": encoding[:40]}
                        )
                    declared = response.headers.get("Content-Length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise DownloadError(
                            _("file is %(size)s bytes, over the %(limit)s byte limit")
                            % {"size": f"{int(declared):,}", "limit": f"{max_bytes:,}"}
                        )
                    chunks: list[bytes] = []
                    size = 0
                    # No chunk size: every read is checked, so a slow drip cannot outlast
                    # the deadline by filling a large buffer.
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadError(
                                _("file is over the %(limit)s byte limit")
                                % {"limit": f"{max_bytes:,}"}
                            )
                        if time.monotonic() > deadline:
                            raise _gave_up(timeout)
                        chunks.append(chunk)
                    content_type = response.headers.get("Content-Type", "").split(";")[0]
                    return Downloaded(b"".join(chunks), content_type.strip().lower(), url)
            except httpx.TimeoutException:
                raise DownloadError(
                    _("%(host)s timed out") % {"host": host}, transient=True
                ) from None
            except httpx.HTTPError as exc:
                raise DownloadError(
                    _("could not fetch from %(host)s (%(error)s)")
                    % {"host": host, "error": type(exc).__name__},
                    transient=True,
                ) from None
        raise DownloadError(_("more than %(count)d redirects") % {"count": MAX_REDIRECTS})


def _gave_up(timeout: float) -> DownloadError:
    return DownloadError(
        _("gave up after %(seconds)s s") % {"seconds": f"{timeout:.0f}"}, transient=True
    )


def _unresolved(host: str, exc: BaseException) -> DownloadError:
    return DownloadError(
        _("could not resolve %(host)s (%(error)s)") % {"host": host, "error": type(exc).__name__}
    )


def _answer_error(host: str, response: httpx.Response) -> DownloadError:
    status = response.status_code
    answered = _("%(host)s answered HTTP %(status)d") % {"host": host, "status": status}
    if status in TRANSIENT_STATUSES:
        return DownloadError(
            answered,
            transient=True,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in EXPIRED_STATUSES:
        return DownloadError(_("%(answered)s: the result URL expired") % {"answered": answered})
    return DownloadError(answered)
