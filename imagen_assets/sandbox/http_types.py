"""The request and response values passed between the HTTP handler and the API modules.

Keeping these plain lets ``wave.py`` and ``wavespeed.py`` be written (and read) as pure
"request in, response out" functions with no knowledge of sockets or ``http.server``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """An incoming request, body fully read.

    ``headers`` is case-insensitive (an ``http.client.HTTPMessage``); ``base_url`` is
    ``http://<Host header>``, so absolute URLs in answers point back to wherever the client
    reached the sandbox (useful behind Docker port mappings or on 0.0.0.0).
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Any
    body: bytes
    base_url: str

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def query_param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, or None."""
        value = self.header("Authorization")
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` if it is not valid JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Response:
    """A complete answer: status, body bytes, content type and any extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Serialise ``payload`` compactly as UTF-8 JSON (non-ASCII kept as is)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status=status, body=body, headers=headers)
