"""imagen_assets.explain: every failure the pipeline records, in a marketer's words."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from imagen_assets import explain
from imagen_assets.explain import Kind, classify, withheld_charge
from imagen_assets.models import GenerationTask
from imagen_assets.providers.errors import ProviderError
from imagen_assets.providers.sandbox import SandboxProvider
from imagen_assets.providers.wave import WaveProvider
from imagen_assets.providers.wavespeed import WaveSpeedProvider
from imagen_assets.retired_models import RETIRED_MODELS, retired
from imagen_assets.sandbox import wave as sandbox_wave
from imagen_assets.sandbox import wavespeed as sandbox_wavespeed


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        # What the sandboxes say (Wave's envelope, WaveSpeed's words).
        (sandbox_wave.FAILURE_CODE, sandbox_wave.FAILURE_MESSAGE, Kind.PROMPT_REFUSED),
        ("", sandbox_wavespeed.FAILURE_MESSAGE, Kind.PROMPT_REFUSED),
        ("", "Content is filtered due to unknown reasons", Kind.PROMPT_REFUSED),
        ("1200", "moderation", Kind.PROMPT_REFUSED),
        ("upstream_bad_request", "Upstream returned: bad size", Kind.REQUEST_REFUSED),
        ("capability_violation", "extra not allowed (param: extra)", Kind.REQUEST_REFUSED),
        ("", "Wave: HTTP 400 [invalid_aspect_ratio]: no", Kind.REQUEST_REFUSED),
        # What jobs.py records.
        ("api_key", "Wave refused the API key (HTTP 401): check ...", Kind.KEY_REFUSED),
        ("timeout", "The provider did not finish within 30 minutes.", Kind.PROVIDER_DOWN),
        ("unavailable", "Wave has not been answering since 14:02", Kind.PROVIDER_DOWN),
        ("attempts", "Gave up after 5 attempts to submit to Wave.", Kind.PROVIDER_DOWN),
        ("503", "Wave: HTTP 503: busy", Kind.PROVIDER_DOWN),
        ("upstream_unavailable", "[upstream_unavailable] down", Kind.PROVIDER_DOWN),
        ("5003", "service unavailable", Kind.PROVIDER_DOWN),
        ("ambiguous", "The request may or may not have reached", Kind.UNCERTAIN),
        ("unexpected_response", "Unexpected provider response", Kind.UNREADABLE),
        ("config", "Provider 'x' is not configured", Kind.NOT_SET_UP),
        ("402", "insufficient balance", Kind.NO_CREDIT),
        # The provider no longer knows the model.
        ("model_not_found", "no such model", Kind.MODEL_RETIRED),
        ("", "Wave: HTTP 400: unknown model 'imagen-4.0'", Kind.MODEL_RETIRED),
        ("", "Wave: HTTP 404: model imagen-4.0 is not supported", Kind.MODEL_RETIRED),
        ("price_not_configured", "model without price", Kind.MODEL_RETIRED),
        ("", "The model refused: invalid prompt", Kind.PROMPT_REFUSED),
        ("", "", Kind.FAILED),
        ("task_failed", "something odd", Kind.FAILED),
    ],
)
def test_classify(code, message, kind):
    assert classify(code, message) is kind


def test_a_refused_key_read_from_the_error_itself():
    error = ProviderError("Wave", "", status_code=401, alias="wave")
    assert classify(error.error_code, str(error)) is Kind.KEY_REFUSED


def test_every_kind_has_words_that_fill_in():
    for kind in Kind:
        title, advice = explain._words(kind, "Wave", "imagen-4.0")
        assert title and advice.endswith(".")
        assert "%(" not in title + advice


def test_neutral_kinds_are_the_ones_nobody_must_fix():
    assert {Kind.WITHHELD, Kind.CANCELLED, Kind.WAITING} == explain.NEUTRAL


@pytest.mark.parametrize(
    ("cost", "outputs", "expected"),
    [
        (None, 1, None),  # not finished: unknown
        (Decimal("0.04"), 1, Decimal(0)),  # cost reckoned from the delivered images
        (Decimal("0.0425"), 1, Decimal(0)),
        (Decimal("0.16"), 1, Decimal("0.12")),  # charged for all four
        (Decimal("0"), 0, Decimal(0)),
    ],
)
def test_withheld_charge(cost, outputs, expected):
    task = GenerationTask(
        num_images=4,
        estimated_cost=Decimal("0.16"),
        cost=cost,
        outputs=[{"url": "u"}] * outputs,
    )
    assert withheld_charge(task) == expected


class RetiredModelTableTests:
    def test_imagen_4_on_wave_delisted_2026_09_03(self):
        row = retired(WaveProvider, "imagen-4.0")
        assert row is not None
        assert row.retired_on == date(2026, 9, 3)
        assert "Google" in row.note
        assert row.source

    def test_only_that_provider_and_model(self):
        assert retired(WaveProvider, "imagen-5") is None
        assert retired(WaveSpeedProvider, "imagen-4.0") is None
        assert retired(SandboxProvider, "imagen-4.0") is None

    def test_every_row_names_an_importable_backend(self):
        from django.utils.module_loading import import_string

        for row in RETIRED_MODELS:
            assert isinstance(import_string(row.backend), type)
            assert row.model and row.provider_name and row.source
