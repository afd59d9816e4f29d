"""The two ways talking to a provider goes wrong: a failed call, and a refused webhook."""

from __future__ import annotations

from django.utils.translation import gettext as _


class ProviderError(Exception):
    """A provider call failed. The message is safe to show in the admin: no secrets.

    ``retryable`` marks refusals worth trying again later (429, 5xx, the network);
    ``ambiguous`` marks a call that may have been acted on although no answer came back
    (a read timeout after sending): a submit may then only be repeated when the provider
    takes an idempotency key. ``unexpected`` marks a 2xx answer that could not be read
    (not JSON, not an object, a missing field, an unknown status, an answer about another
    task): on a status read it is transient for a few reads in a row, then the task fails
    (docs/reliability.md P6). ``alias`` is the provider's key in ``IMAGEN_ASSETS["PROVIDERS"]``,
    so a refused API key can say which setting to check (never the key itself).
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
        unexpected: bool = False,
        alias: str = "",
    ) -> None:
        self.provider = provider
        self.unexpected = unexpected
        self.alias = alias
        self.ambiguous = ambiguous
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.key_refused:
            setting = (
                f"IMAGEN_ASSETS['PROVIDERS'][{self.alias!r}]['OPTIONS']['API_KEY']"
                if self.alias
                else _("the provider's API_KEY option")
            )
            refused = _(
                "%(provider)s refused the API key (HTTP %(status)s): check %(setting)s."
            ) % {
                "provider": self.provider,
                "status": self.status_code,
                "setting": setting,
            }
            if not self.message:
                return refused
            said = _("%(provider)s said: %(message)s") % {
                "provider": self.provider,
                "message": self.message,
            }
            return f"{refused} {said}"
        where = f"HTTP {self.status_code}" if self.status_code else "no HTTP answer"
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider}: {where}{code}: {self.message}"

    @property
    def key_refused(self) -> bool:
        """The provider refused our credentials (HTTP 401 or 403): a configuration problem,
        not a failed image (docs/reliability.md P4)."""
        return self.status_code in (401, 403)

    @property
    def unanswered(self) -> bool:
        """The provider gave no sane answer: none at all (could not connect, timed out, the
        call's deadline passed, the connection dropped) or a 5xx. What a circuit breaker
        counts (docs/reliability.md P7); any other answer shows the provider is up."""
        return self.status_code is None or self.status_code >= 500

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
