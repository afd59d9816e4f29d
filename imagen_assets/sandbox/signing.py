"""WaveSpeed's webhook signature (docs/providers.md section 2.7), as the sandbox produces it.

The scheme borrows the Standard Webhooks header names but not its algorithm: the key is
the secret *minus* its ``whsec_`` prefix taken as UTF-8 text (not base64-decoded), the
digest is lowercase hex, and the version tag is ``v3``. Test suites may import
:func:`sign_wavespeed_webhook` to forge correctly (or deliberately wrongly) signed requests.
"""

from __future__ import annotations

import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - a fixed prefix, not a secret
SIGNATURE_VERSION = "v3"


def sign_wavespeed_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value, ``"v3,<64 lowercase hex chars>"``.

    ``body`` must be the exact bytes sent; the signed content is
    ``f"{webhook_id}.{timestamp}.".encode() + body``. A secret without the ``whsec_``
    prefix is used whole.
    """
    key = secret.removeprefix(SECRET_PREFIX).encode("utf-8")
    signed = f"{webhook_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION},{digest}"
