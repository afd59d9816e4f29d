"""Provider backends, built from ``IMAGEN_ASSETS["PROVIDERS"]`` by alias."""

from __future__ import annotations

from typing import Any

import httpx
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from imagen_assets import conf
from imagen_assets.providers.base import Provider, WebhookAuth
from imagen_assets.providers.errors import ProviderError, WebhookError
from imagen_assets.providers.types import GenerationParams, Output, ProviderTask, WebhookNotice
from imagen_assets.status import TaskStatus  # the words a provider reports in (kept here too)

__all__ = [
    "GenerationParams",
    "Output",
    "Provider",
    "ProviderError",
    "ProviderTask",
    "TaskStatus",
    "WebhookAuth",
    "WebhookError",
    "WebhookNotice",
    "get_provider",
    "get_provider_class",
    "provider_aliases",
    "provider_display_name",
]


def provider_aliases() -> list[str]:
    return list(conf.get("PROVIDERS"))


def provider_config(alias: str) -> dict[str, Any]:
    providers = conf.get("PROVIDERS")
    if alias not in providers:
        known = ", ".join(sorted(providers)) or "none"
        raise ImproperlyConfigured(
            f"No provider {alias!r} in IMAGEN_ASSETS['PROVIDERS'] (configured: {known})."
        )
    config: dict[str, Any] = providers[alias]
    if "BACKEND" not in config:
        raise ImproperlyConfigured(f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}] has no 'BACKEND'.")
    return config


def get_provider_class(alias: str) -> type[Provider]:
    backend = provider_config(alias)["BACKEND"]
    try:
        cls = import_string(backend)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"IMAGEN_ASSETS['PROVIDERS'][{alias!r}]['BACKEND'] = {backend!r} cannot be "
            f"imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ImproperlyConfigured(f"{backend!r} is not a subclass of {Provider.__qualname__}.")
    return cls


def get_provider(alias: str | None = None, *, client: httpx.Client | None = None) -> Provider:
    """Build the provider configured under ``alias`` (default: ``DEFAULT_PROVIDER``).

    Settings are read on every call; use the result as a context manager so its HTTP
    connections are closed.
    """
    alias = alias or conf.get("DEFAULT_PROVIDER")
    cls = get_provider_class(alias)
    return cls(alias, provider_config(alias).get("OPTIONS", {}), client=client)


def _base_url(alias: str, cls: type[Provider]) -> str:
    """Where ``alias`` sends its requests (its ``BASE_URL`` or the backend's default)."""
    options = provider_config(alias).get("OPTIONS", {})
    url = options.get("BASE_URL") or cls.default_options.get("BASE_URL") or ""
    return str(url).rstrip("/")


def provider_display_name(alias: str) -> str:
    """How people read provider ``alias``: its backend's name ("Wave"), the alias itself when
    it is not (or badly) configured, and "Sandbox (Wave protocol)" for a real provider's
    backend pointed at a configured sandbox's address (the demo does that when it has no
    keys): images made there must not read as a vendor's.

    Read from the backend classes and settings, so listing many rows builds no providers.
    """
    from imagen_assets.providers.sandbox import SandboxProvider

    try:
        cls = get_provider_class(alias)
        if not issubclass(cls, SandboxProvider) and served_by_sandbox(alias):
            return gettext("Sandbox (%(protocol)s protocol)") % {"protocol": cls.display_name}
    except ImproperlyConfigured:
        return alias
    return cls.display_name


def served_by_sandbox(alias: str) -> bool:
    """Whether provider ``alias`` is the sandbox, or a real provider's backend pointed at a
    configured sandbox's address (then its images, prices and models are the sandbox's:
    what is said of the vendor, such as a retired model, does not apply)."""
    from imagen_assets.providers.sandbox import SandboxProvider

    cls = get_provider_class(alias)
    if issubclass(cls, SandboxProvider):
        return True
    url = _base_url(alias, cls)
    for other in provider_aliases():
        try:
            other_cls = get_provider_class(other)
        except ImproperlyConfigured:
            continue  # a broken provider is reported by its own check (E001)
        if issubclass(other_cls, SandboxProvider) and url == _base_url(other, other_cls):
            return True
    return False
