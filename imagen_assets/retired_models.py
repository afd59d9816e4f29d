"""Models the providers no longer serve: a small dated table, easy to update.

Add a row when a provider delists a model (with the date and where it says so); check
``imagen_assets.W040`` then warns about any configured provider still using it, and a task
that fails because the provider no longer knows the model says so in the admin.
A row matches a configured provider whose ``BACKEND`` is ``backend`` or a subclass of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.utils.module_loading import import_string


@dataclass(frozen=True)
class RetiredModel:
    """One model a provider retired: from ``retired_on`` its tasks fail."""

    #: Dotted path of the provider class (subclasses match too).
    backend: str
    #: The ``MODEL`` option value, as sent to the provider.
    model: str
    #: The provider, as people name it.
    provider_name: str
    retired_on: date
    #: Where this is said (a page, a changelog; docs/providers.md keeps the details).
    source: str
    #: A model to switch to, when one is known to be served; "" when none is confirmed.
    replacement: str = ""
    #: Anything else an operator should know.
    note: str = ""


RETIRED_MODELS: tuple[RetiredModel, ...] = (
    RetiredModel(
        backend="imagen_assets.providers.wave.WaveProvider",
        model="imagen-4.0",
        provider_name="Wave",
        retired_on=date(2026, 9, 3),
        source=(
            "Wave's newest docs (docs.qingbo.dev, en/changelog/notices.mdx): "
            '"delisted on 2026-09-03"; docs/providers.md §1.0'
        ),
        replacement="",
        note=(
            "Google has deprecated every Imagen model as well (Vertex AI: update endpoints "
            "before 2026-06-30; it names gemini-2.5-flash-image as the replacement), so no "
            "Imagen 4 model is known to be served on Wave any more."
        ),
    ),
)


def _matches(row: RetiredModel, backend: type, model: str) -> bool:
    if row.model != model:
        return False
    try:
        retired_class = import_string(row.backend)
    except ImportError:
        return False
    return isinstance(retired_class, type) and issubclass(backend, retired_class)


def retired(backend: type, model: str) -> RetiredModel | None:
    """The table's row for ``model`` on provider class ``backend``, or None."""
    for row in RETIRED_MODELS:
        if _matches(row, backend, model):
            return row
    return None
