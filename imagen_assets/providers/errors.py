"""The two ways talking to a provider goes wrong: a failed call, and a refused webhook."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed. The message is safe to show in the admin: no secrets.

    ``retryable`` marks refusals worth trying again later (429, 5xx, the network);
    ``ambiguous`` marks a call that may have been acted on although no answer came back
    (a read timeout after sending): a submit may then only be repeated when the provider
    takes an idempotency key.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status_code: int | None = None,
        code: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        self.provider = provider
        self.ambiguous = ambiguous
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"HTTP {self.status_code}" if self.status_code else "no HTTP answer"
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}: {where}{code}: {self.message}"

    @property
    def error_code(self) -> str:
        """The code recorded on a task this error failed: the provider's own, else the
        HTTP status."""
        return self.code or str(self.status_code or "")


class WebhookError(Exception):
    """A webhook was refused. ``status_code`` is the 4xx to answer with."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        self.message = message
        self.status_code = status_code
        super().__init__(message)
