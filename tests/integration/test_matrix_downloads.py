"""The guarded download against real loopback servers (docs/reliability.md D1, D3-D9, I3, I4).

The unit tests (tests/unit/test_downloads.py) drive :func:`imagen_assets.downloads.download`
through ``httpx.MockTransport``; here the same function talks real HTTP to servers on
127.0.0.x, with the real socket layer, so what is asserted is what a socket saw: a canary
listener that must see no connection, the bytes a server managed to send, the memory the
client used while a server streamed 100 MB.
"""

from __future__ import annotations

import copy
import io
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image

from imagen_assets import downloads
from imagen_assets.downloads import DownloadError, download
from imagen_assets.hosts import ResultHosts
from imagen_assets.imaging import ImageRejected
from imagen_assets.ingest import fetch_and_check
from imagen_assets.outcomes import Did

pytestmark = [pytest.mark.integration]

MiB = 1024 * 1024


def png_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


# -- loopback parts --------------------------------------------------------------------------


class Canary:
    """A TCP listener that only counts the connections it accepts (it never answers)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.host, self.port = self.sock.getsockname()[:2]
        self.accepted = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


@dataclass
class Served:
    """What one path answers: status, headers, and the body as a generator of chunks."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Callable[[], Iterator[bytes]] = lambda: iter(())


class QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-answer (as the download must) is not an error here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.x with scripted paths and counters."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.paths: dict[str, Served] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bytes_sent = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                served = owner.paths.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                self.send_response(served.status)
                for name, value in served.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in served.headers:
                    self.send_header("Connection", "close")  # the body ends with the socket
                    self.close_connection = True
                self.end_headers()
                try:
                    for chunk in served.chunks():
                        self.wfile.write(chunk)
                        owner.bytes_sent += len(chunk)
                except OSError:  # the client hung up, as it should on an oversized body
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer((host, port), Handler)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def serve(self, path: str, body: bytes, **headers: str) -> None:
        headers = {"Content-Type": "image/png", "Content-Length": str(len(body)), **headers}
        self.paths[path] = Served(200, headers, lambda: iter([body]))

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.paths[path] = Served(status, {"Location": location, "Content-Length": "0"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    running = LoopbackServer()
    yield running
    running.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    running = Canary()
    yield running
    running.close()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name passed to the system resolver (``socket.getaddrinfo``) from now on;
    the real resolver still answers."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    return seen


#: Result hosts letting every host through, for the tests of the other rules (D1 has its own).
ANY_HOST = ResultHosts.of(["*"], "RESULT_HOSTS")


def fetch(url: str, **kwargs: Any) -> downloads.Downloaded:
    options: dict[str, Any] = {"max_bytes": MiB, "timeout": 20.0, "hosts": ANY_HOST}
    options.update(kwargs)
    return download(url, **options)


# -- D3: DNS rebinding -----------------------------------------------------------------------


class DNSRebindingTests:
    def test_the_connection_goes_to_the_checked_address_and_never_to_the_second_answer(
        self, lookups: list[str]
    ) -> None:
        """D3. The name is resolved once: the first answer is checked and connected to; a
        second answer (the rebinding one, 127.0.0.1, where a canary listens on the same
        port) is never asked for, and the system resolver never sees the name."""
        good = LoopbackServer(host="127.0.0.2")
        canary = Canary(host="127.0.0.1", port=good.port)
        try:
            image = png_bytes()
            good.serve("/out.png", image)
            answers = iter([["127.0.0.2"], ["127.0.0.1"]])
            asked: list[tuple[str, int]] = []

            def rebinding(host: str, port: int) -> list[str]:
                asked.append((host, port))
                return next(answers)

            got = fetch(
                f"http://cdn.rebind.test:{good.port}/out.png",
                allow_hosts=["cdn.rebind.test"],  # both answers are loopback here
                resolver=rebinding,
            )

            assert got.content == image
            assert asked == [("cdn.rebind.test", good.port)]
            assert [path for path, _ in good.requests] == ["/out.png"]
            assert good.requests[0][1]["Host"] == f"cdn.rebind.test:{good.port}"
            assert canary.accepted == 0
            assert "cdn.rebind.test" not in lookups
        finally:
            canary.close()
            good.close()

    def test_a_rebinding_answer_on_a_redirect_hop_is_checked_again_and_refused(
        self, server: LoopbackServer, canary: Canary
    ) -> None:
        """D3 with a redirect: the next hop is resolved and checked afresh, so a name that
        now answers a loopback address (where the canary listens) is refused, unconnected."""
        server.redirect("/first", f"http://rebind.test:{canary.port}/second")
        answers = {"trusted.test": [server.host], "rebind.test": ["127.0.0.1"]}

        with pytest.raises(DownloadError, match="non-public address"):
            fetch(
                f"http://trusted.test:{server.port}/first",
                allow_hosts=["trusted.test"],
                resolver=lambda host, port: answers[host],
            )
        assert [path for path, _ in server.requests] == ["/first"]
        assert canary.accepted == 0


# -- D4: redirects ---------------------------------------------------------------------------


class RedirectTests:
    def test_a_redirect_to_the_metadata_address_is_refused_before_connecting(
        self, server: LoopbackServer, lookups: list[str]
    ) -> None:
        """D4. A real 302 to http://169.254.169.254/...: refused on its address, with no
        connection attempted (it would hang or fail with a network error, not this)."""
        server.redirect("/out.png", "http://169.254.169.254/latest/meta-data/iam/")

        with pytest.raises(DownloadError) as refused:
            fetch(server.url("/out.png"), allow_hosts=["127.0.0.1"])

        assert "169.254.169.254" in str(refused.value)
        assert "non-public" in str(refused.value)
        assert not refused.value.transient
        assert [path for path, _ in server.requests] == ["/out.png"]

    def test_a_redirect_to_another_host_is_checked_on_its_own(
        self, server: LoopbackServer, canary: Canary
    ) -> None:
        """D4. Allow-listing the first host does not allow the next one: ``localhost``
        (resolved by the system resolver to loopback, where the canary listens) is refused."""
        server.redirect("/out.png", f"http://localhost:{canary.port}/out.png")

        with pytest.raises(DownloadError, match="non-public address"):
            fetch(server.url("/out.png"), allow_hosts=["127.0.0.1"])
        assert canary.accepted == 0

    def test_three_redirects_are_followed_a_fourth_is_refused(self, server: LoopbackServer) -> None:
        """D4. At most three hops, each one a real request."""
        image = png_bytes()
        server.serve("/end.png", image)
        for hop in range(4):
            server.redirect(f"/hop{hop}", f"/hop{hop + 1}")
        server.redirect("/hop4", "/end.png")
        server.redirect("/short0", "/short1")
        server.redirect("/short1", "/short2")
        server.redirect("/short2", "/end.png")

        assert fetch(server.url("/short0"), allow_hosts=["127.0.0.1"]).content == image
        with pytest.raises(DownloadError, match="more than 3 redirects"):
            fetch(server.url("/hop0"), allow_hosts=["127.0.0.1"])

        paths = [path for path, _ in server.requests]
        assert paths == [
            "/short0",
            "/short1",
            "/short2",
            "/end.png",
            *(f"/hop{i}" for i in range(4)),
        ]


# -- D5: environment proxies -----------------------------------------------------------------


class EnvironmentProxyTests:
    def test_proxy_variables_are_ignored(
        self, server: LoopbackServer, canary: Canary, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """D5. HTTP_PROXY, HTTPS_PROXY and ALL_PROXY point at a canary; the download still
        goes straight to the server, and the canary sees nothing. A client that trusts the
        environment does reach the canary, so the canary is really in the way."""
        proxy = f"http://127.0.0.1:{canary.port}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        image = png_bytes()
        server.serve("/out.png", image)

        assert fetch(server.url("/out.png"), allow_hosts=["127.0.0.1"]).content == image
        assert canary.accepted == 0
        assert [path for path, _ in server.requests] == ["/out.png"]

        with httpx.Client(trust_env=True, timeout=1.0) as trusting, pytest.raises(httpx.HTTPError):
            trusting.get(server.url("/out.png"))
        assert canary.accepted == 1
        assert len(server.requests) == 1


# -- D6: URLs refused at validation ----------------------------------------------------------


class URLValidationTests:
    @pytest.mark.parametrize(
        ("template", "reason"),
        [
            ("file:///etc/passwd", r"only http\(s\)"),
            ("ftp://127.0.0.1:{port}/out.png", r"only http\(s\)"),
            ("data:image/png;base64,iVBORw0KGgo=", r"only http\(s\)"),
            ("gopher://127.0.0.1:{port}/_GET", r"only http\(s\)"),
            ("http://ok@127.0.0.1:{port}/out.png", "credentials"),
            ("http://ok:pw@127.0.0.1:{port}/out.png", "credentials"),
        ],
    )
    def test_refused_on_its_form_even_for_an_allowed_host(
        self, canary: Canary, lookups: list[str], template: str, reason: str
    ) -> None:
        """D6. The scheme and the credentials are refused before any lookup or connection,
        even though the host (127.0.0.1, where the canary listens) is allow-listed."""
        with pytest.raises(DownloadError, match=reason) as refused:
            fetch(template.format(port=canary.port), allow_hosts=["127.0.0.1"])
        assert not refused.value.transient
        assert canary.accepted == 0
        assert lookups == []

    @pytest.mark.parametrize(
        "template",
        [
            "http://2130706433:{port}/out.png",
            "http://0x7f000001:{port}/out.png",
            "http://0177.0.0.1:{port}/out.png",
            "http://127.1:{port}/out.png",
            "http://[::ffff:127.0.0.1]:{port}/out.png",
            "http://localhost:{port}/out.png",
        ],
    )
    def test_other_spellings_of_loopback_are_refused_on_their_address(
        self, canary: Canary, template: str
    ) -> None:
        """D6. With the real resolver, the integer, hex and octal spellings of 127.0.0.1
        resolve to it; they are refused as non-public and the canary listening there sees
        no connection. (Only the literal name "127.0.0.1" would be allow-listed.)"""
        with pytest.raises(DownloadError, match="non-public address") as refused:
            fetch(template.format(port=canary.port), allow_hosts=["127.0.0.1"])
        assert not refused.value.transient
        assert canary.accepted == 0


# -- D7: size cap ----------------------------------------------------------------------------

STREAM = 100 * MiB
BLOCK = b"\xab" * (64 * 1024)


def endless(total: int = STREAM) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        for _ in range(total // len(BLOCK)):
            yield BLOCK

    return chunks


def peak_memory(call: Callable[[], Any]) -> tuple[Any, int]:
    """(what ``call`` returned or raised, peak bytes Python allocated while it ran)."""
    tracemalloc.start()
    try:
        try:
            result: Any = call()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class SizeCapTests:
    def test_a_declared_size_over_the_cap_is_refused_before_reading(
        self, server: LoopbackServer
    ) -> None:
        """D7, honest Content-Length: 100 MB declared, refused on the header."""
        server.paths["/big.png"] = Served(
            200, {"Content-Type": "image/png", "Content-Length": str(STREAM)}, endless()
        )
        result, peak = peak_memory(lambda: fetch(server.url("/big.png"), allow_hosts=["127.0.0.1"]))

        assert isinstance(result, DownloadError)
        assert "104,857,600 bytes, over the 1,048,576 byte limit" in str(result)
        assert peak < 4 * MiB
        assert server.bytes_sent < 16 * MiB  # socket buffers, not the 100 MB

    def test_a_body_without_content_length_is_cut_at_the_cap(self, server: LoopbackServer) -> None:
        """D7, no Content-Length: the stream is aborted once it passes the cap; memory
        stays near the cap, not near the 100 MB the server would send."""
        server.paths["/big.png"] = Served(200, {"Content-Type": "image/png"}, endless())
        result, peak = peak_memory(lambda: fetch(server.url("/big.png"), allow_hosts=["127.0.0.1"]))

        assert isinstance(result, DownloadError)
        assert "over the 1,048,576 byte limit" in str(result)
        assert not result.transient
        assert peak < 4 * MiB
        assert server.bytes_sent < 16 * MiB

    def test_a_content_length_that_lies_low_reads_only_what_it_declares(
        self, server: LoopbackServer
    ) -> None:
        """D7, lying Content-Length: 1000 declared, 100 MB sent. The client reads exactly
        the declared bytes and hangs up; they are not an image, so nothing is accepted."""
        server.paths["/lies.png"] = Served(
            200, {"Content-Type": "image/png", "Content-Length": "1000"}, endless()
        )
        result, peak = peak_memory(
            lambda: fetch(server.url("/lies.png"), allow_hosts=["127.0.0.1"])
        )

        assert isinstance(result, downloads.Downloaded)
        assert len(result.content) == 1000
        assert peak < 4 * MiB
        assert server.bytes_sent < 16 * MiB

    def test_the_cap_itself_is_accepted(self, server: LoopbackServer) -> None:
        """D7 boundary: exactly the cap, without Content-Length, is read whole."""
        server.paths["/cap.png"] = Served(
            200, {"Content-Type": "image/png"}, lambda: iter([b"\x01" * MiB])
        )
        assert len(fetch(server.url("/cap.png"), allow_hosts=["127.0.0.1"]).content) == MiB


# -- D8: gzip bomb ---------------------------------------------------------------------------

BOMB_EXPANDED = 1024 * MiB


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """gzip of 1 GiB of zeros (about 1 MB), made here rather than committed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    zeros = bytes(8 * MiB)
    parts = [compressor.compress(zeros) for _ in range(BOMB_EXPANDED // len(zeros))]
    parts.append(compressor.flush())
    return b"".join(parts)


class GzipBombTests:
    @pytest.mark.parametrize("encoding", ["gzip", "GZIP", "deflate, gzip", "br"])
    def test_an_encoded_body_is_refused_without_decoding_it(
        self, server: LoopbackServer, gzip_bomb: bytes, encoding: str
    ) -> None:
        """D8. A 1 MB gzip that expands to 1 GiB, under the byte cap as sent: refused on
        its Content-Encoding, and the client never inflates it (memory stays small)."""
        assert len(gzip_bomb) < 2 * MiB
        assert zlib.decompressobj(31).decompress(gzip_bomb, 1024) == bytes(1024)
        server.serve("/bomb.png", gzip_bomb, **{"Content-Encoding": encoding})
        result, peak = peak_memory(
            lambda: fetch(server.url("/bomb.png"), max_bytes=4 * MiB, allow_hosts=["127.0.0.1"])
        )

        assert isinstance(result, DownloadError), result
        assert "encoded body" in str(result)
        assert peak < 8 * MiB
        [(_path, headers)] = server.requests
        assert headers["Accept-Encoding"] == "identity"


# -- I3: what the bytes are, whatever the server says ------------------------------------


def _saved(fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (16, 16), (10, 120, 200))
    if fmt == "GIF":
        image = image.convert("P")
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


HOSTILE_BODIES = {
    "html": b"<!doctype html><html><body><script>alert(1)</script></body></html>",
    "svg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
        b'height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>'
    ),
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n",
    "tiff": _saved("TIFF"),
    "gif": _saved("GIF"),
    "bmp": _saved("BMP"),
}


class LyingContentTypeTests:
    @pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
    def test_a_body_that_is_not_jpeg_png_or_webp_is_refused_whatever_its_type(
        self, server: LoopbackServer, settings: Any, kind: str
    ) -> None:
        """I3. Each body is served as ``image/png`` over real HTTP; the magic bytes decide."""
        settings.IMAGEN_ASSETS = {"DOWNLOAD_ALLOW_HOSTS": ["127.0.0.1"]}
        server.serve(f"/{kind}.png", HOSTILE_BODIES[kind])

        with pytest.raises(ImageRejected, match="not a JPEG, PNG or WebP image"):
            fetch_and_check(server.url(f"/{kind}.png"), ANY_HOST)
        assert len(server.requests) == 1


# A sanity check of the fixture rather than of the app: make sure the hostile bodies are what
# their names say (Pillow would otherwise silently give us JPEGs).
def test_the_hostile_bodies_are_in_their_formats() -> None:
    assert HOSTILE_BODIES["tiff"][:4] in (b"II*\x00", b"MM\x00*")
    assert HOSTILE_BODIES["gif"][:6] in (b"GIF87a", b"GIF89a")
    assert HOSTILE_BODIES["bmp"][:2] == b"BM"


# -- D9: an expired result URL ---------------------------------------------------------------

S3_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message><Expires>2026-12-01T10:00:00Z</Expires>"
    b"</Error>"
)


class ExpiredURLTests:
    @pytest.mark.parametrize("status", [403, 404, 410])
    def test_an_expired_output_url_fails_the_image_without_a_retry_loop(
        self, server: LoopbackServer, settings: Any, db: None, enqueued: list[Any], status: int
    ) -> None:
        """D9. The object store answers 403/404/410 with S3's XML: the image fails with
        the answer in its reason, after one request; nothing is queued to try again."""
        from imagen_assets import jobs
        from imagen_assets.models import Campaign, GeneratedImage
        from tests.factories import running_wavespeed_task

        trust_the_loopback_host(settings)
        server.paths["/expired.png"] = Served(
            status,
            {"Content-Type": "application/xml", "Content-Length": str(len(S3_EXPIRED))},
            lambda: iter([S3_EXPIRED]),
        )
        campaign = Campaign.objects.create(name="Expired", slug="expired")
        task = running_wavespeed_task(
            campaign,
            f"d9-{status}",
            status="succeeded",
            outputs=[{"url": server.url("/expired.png"), "nsfw": False}],
        )
        outcome = jobs.complete(task.pk)

        image = GeneratedImage.objects.get(task=task)
        assert outcome.retrying == 0
        assert image.status == GeneratedImage.Status.FAILED
        assert f"answered HTTP {status}: the result URL expired" in image.error_message
        assert not image.file
        assert [path for path, _ in server.requests] == ["/expired.png"]
        assert enqueued == []


def trust_the_loopback_host(settings: Any, **providers_options: Any) -> None:
    """The test settings with 127.0.0.1 trusted: a private address we download from, and a
    host the WaveSpeed provider serves its results from."""
    config = copy.deepcopy(settings.IMAGEN_ASSETS)
    config["DOWNLOAD_ALLOW_HOSTS"] = ["127.0.0.1"]
    options = config["PROVIDERS"]["wavespeed"]["OPTIONS"]
    options["RESULT_HOSTS"] = ["127.0.0.1"]
    options.update(providers_options)
    settings.IMAGEN_ASSETS = config


# -- D1: a result URL on a host the provider does not serve from -----------------------------


class UntrustedHostTests:
    """D1. A loopback fake WaveSpeed (its API host, 127.0.0.1, is trusted) answers a status
    read with a completed prediction whose output is on ``evil.test``: the poll finishes the
    task and ``complete`` refuses the image on the host's name, before the system resolver
    is asked about it (the ``lookups`` fixture counts every name it is asked) or anything
    connects to it; the same on a redirect hop from the trusted host."""

    def poll_a_completed_prediction(
        self, server: LoopbackServer, settings: Any, output_url: str, task_id: str
    ) -> Any:
        from imagen_assets import jobs
        from imagen_assets.models import Campaign
        from tests.factories import running_wavespeed_task

        # The provider's API is this server; RESULT_HOSTS is left at WaveSpeed's defaults.
        config = copy.deepcopy(settings.IMAGEN_ASSETS)
        config["DOWNLOAD_ALLOW_HOSTS"] = ["127.0.0.1"]
        options = config["PROVIDERS"]["wavespeed"]["OPTIONS"]
        options.update(BASE_URL=server.url(""), API_KEY="d1-key")
        options.pop("RESULT_HOSTS", None)
        settings.IMAGEN_ASSETS = config
        answer = json.dumps(
            {
                "code": 200,
                "message": "success",
                "data": {"id": task_id, "status": "completed", "outputs": [output_url]},
            }
        ).encode()
        server.serve(
            f"/api/v3/predictions/{task_id}/result", answer, **{"Content-Type": "application/json"}
        )
        campaign = Campaign.objects.create(name="Untrusted", slug=f"untrusted-{task_id}")
        task = running_wavespeed_task(campaign, task_id)
        outcome = jobs.poll(task.pk, reschedule=False)
        return task.images.get(), outcome

    def test_a_result_on_another_host_fails_the_image_before_any_lookup(
        self,
        server: LoopbackServer,
        settings: Any,
        db: None,
        enqueued: list[Any],
        lookups: list[str],
    ) -> None:
        image, outcome = self.poll_a_completed_prediction(
            server, settings, "http://evil.test/x.png", "d1-direct"
        )

        image.refresh_from_db()
        assert (outcome.did, outcome.stored) == (Did.STORED, 0), outcome  # poll -> complete
        assert image.status == image.Status.FAILED
        assert "refused evil.test (untrusted host)" in image.error_message
        assert "IMAGEN_ASSETS['PROVIDERS']['wavespeed']['OPTIONS']['RESULT_HOSTS']" in (
            image.error_message
        )
        assert "evil.test" not in lookups
        assert [path for path, _ in server.requests] == ["/api/v3/predictions/d1-direct/result"]
        assert enqueued == []  # refused, not left to try again

    def test_a_redirect_to_another_host_is_refused_before_any_lookup(
        self,
        server: LoopbackServer,
        settings: Any,
        db: None,
        enqueued: list[Any],
        lookups: list[str],
    ) -> None:
        server.redirect("/out.png", "http://evil.test/x.png")

        image, _outcome = self.poll_a_completed_prediction(
            server, settings, server.url("/out.png"), "d1-redirect"
        )

        image.refresh_from_db()
        assert image.status == image.Status.FAILED
        assert "refused evil.test (untrusted host)" in image.error_message
        assert "evil.test" not in lookups
        assert [path for path, _ in server.requests][-1] == "/out.png"


# -- I4: a file cut short --------------------------------------------------------------------


def jpeg_bytes(size: tuple[int, int] = (256, 256)) -> bytes:
    """A noisy JPEG: cutting it short really damages it."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


class DamagedFileTests:
    """I4. A result host serves a JPEG cut in half (as a CDN with a partial object might);
    the full decode finds it damaged, the file is downloaded once more: stored when the
    second copy is whole, FAILED with the reason after exactly two GETs when it is not."""

    def complete_with(
        self, server: LoopbackServer, settings: Any, bodies: list[bytes], task_id: str
    ) -> Any:
        from imagen_assets import jobs
        from imagen_assets.models import Campaign
        from tests.factories import running_wavespeed_task

        trust_the_loopback_host(settings)
        served = iter(bodies)
        server.paths["/out.jpg"] = Served(
            200, {"Content-Type": "image/jpeg"}, lambda: iter([next(served)])
        )
        campaign = Campaign.objects.create(name="Damaged", slug=f"damaged-{task_id}")
        task = running_wavespeed_task(
            campaign,
            task_id,
            status="succeeded",
            outputs=[{"url": server.url("/out.jpg"), "nsfw": False}],
        )
        outcome = jobs.complete(task.pk)
        return task.images.get(), outcome

    def test_a_truncated_file_then_the_whole_one_is_stored(
        self,
        server: LoopbackServer,
        settings: Any,
        db: None,
        enqueued: list[Any],
        tmp_path: Any,
    ) -> None:
        settings.MEDIA_ROOT = str(tmp_path)
        whole = jpeg_bytes()

        image, outcome = self.complete_with(
            server, settings, [whole[: len(whole) // 2], whole], "i4-once"
        )

        image.refresh_from_db()
        assert outcome.stored == 1, image.error_message
        assert image.status == image.Status.SUCCEEDED
        assert [path for path, _ in server.requests] == ["/out.jpg", "/out.jpg"]

    def test_a_file_truncated_every_time_fails_after_two_downloads(
        self, server: LoopbackServer, settings: Any, db: None, enqueued: list[Any]
    ) -> None:
        whole = jpeg_bytes()
        cut = whole[: len(whole) // 2]

        image, outcome = self.complete_with(server, settings, [cut, cut, cut], "i4-always")

        image.refresh_from_db()
        assert outcome.stored == 0
        assert image.status == image.Status.FAILED
        assert "image data is damaged" in image.error_message
        assert "in each of 2 downloads" in image.error_message
        assert not image.file
        assert [path for path, _ in server.requests] == ["/out.jpg", "/out.jpg"]
        assert enqueued == []
