"""Brand kits and prompt templates: how the final prompt is made, banned terms (CJK too),
placeholders, template versions, and what ``request_images`` and the CLI refuse."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from unit_helpers import make_campaign

from imagen_assets import services
from imagen_assets.models import (
    Brand,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    PromptTemplate,
    PromptTemplateVersion,
    StylePreset,
)
from imagen_assets.prompt_text import (
    PlaceholderError,
    contains_term,
    fill,
    find_banned_term,
    placeholders,
)
from imagen_assets.prompts import BannedTermError, PromptError, compose_prompt


class PlaceholderTests:
    def test_names_in_order_of_first_use_any_script(self) -> None:
        text = "A {product} on a {surface}, {product} again, {颜色} tones"
        assert placeholders(text) == ["product", "surface", "颜色"]

    def test_doubled_braces_are_text(self) -> None:
        assert placeholders("Logo {{brand}} on {thing}") == ["thing"]
        assert fill("Logo {{brand}} on {thing}", {"thing": "a mug"}) == "Logo {brand} on a mug"

    @pytest.mark.parametrize("text", ["A {product", "A product}", "A {a b}", "A {}", "{x{y}}"])
    def test_a_brace_that_is_not_a_placeholder_is_refused(self, text: str) -> None:
        with pytest.raises(PlaceholderError):
            placeholders(text)

    def test_fill_strips_values(self) -> None:
        assert fill("A {product} on a {surface}", {"product": " mug ", "surface": "desk"}) == (
            "A mug on a desk"
        )

    def test_unfilled_placeholders_are_named(self) -> None:
        with pytest.raises(PlaceholderError) as caught:
            fill("A {product} on a {surface}", {"product": "mug", "surface": "  "})
        assert caught.value.names == ["surface"]
        assert "{surface}" in str(caught.value)
        assert "{product}" not in str(caught.value)

    def test_unknown_placeholders_are_named(self) -> None:
        with pytest.raises(PlaceholderError) as caught:
            fill("A {product}", {"product": "mug", "colour": "red"})
        assert caught.value.names == ["colour"]
        assert "{colour}" in str(caught.value) and "{product}" in str(caught.value)


class BannedTermTests:
    @pytest.mark.parametrize(
        ("text", "term", "found"),
        [
            ("A cat on a sofa", "cat", True),
            ("A CAT on a sofa", "Cat", True),
            ("Concatenate the category", "cat", False),
            ("cats", "cat", False),
            ("cat.", "cat", True),
            ("A red   bull can", "Red Bull", True),
            ("A red-bull can", "Red Bull", False),
            ("no logo-free designs", "logo", True),  # a hyphen ends a word
            ("#ad in the corner", "#ad", True),
            ("a #adventure", "#ad", False),
            # Chinese: no spaces between words, so anywhere.
            ("穿耐克的跑者", "耐克", True),
            ("穿耐克的跑者", "阿迪", False),
            ("耐克", "耐克", True),
            # A Latin term next to Chinese characters is still a whole word.
            ("穿Nike的跑者", "nike", True),
            ("穿Nikes的跑者", "nike", False),
            # Japanese and Korean as well.
            ("ナイキのシューズ", "ナイキ", True),
            ("나이키운동화", "나이키", True),
            ("", "cat", False),
            ("cat", "   ", False),
        ],
    )
    def test_contains_term(self, text: str, term: str, found: bool) -> None:
        assert contains_term(text, term) is found

    def test_find_returns_the_term_as_written(self) -> None:
        assert find_banned_term("A Nike shoe", ["adidas", "  Nike  "]) == "Nike"
        assert find_banned_term("A plain shoe", ["adidas", "Nike"]) is None

    def test_brand_lists_one_term_per_non_empty_line(self) -> None:
        brand = Brand(name="B", banned_terms="Nike\n\n  red bull \n耐克\n")
        assert brand.banned_term_list() == ["Nike", "red bull", "耐克"]


@pytest.mark.django_db
class ComposeTests:
    @pytest.fixture
    def brand(self) -> Brand:
        return Brand.objects.create(
            name="Meadow",
            prompt_prefix="Product photo for Meadow & Co.:",
            prompt_suffix="Pastel palette, soft daylight.",
            banned_terms="Nike\n耐克\nred bull",
            default_negative_prompt="text, watermark",
            default_aspect_ratio="4:3",
        )

    @pytest.fixture
    def campaign(self, brand: Brand) -> Campaign:
        return make_campaign(brand=brand, brand_prompt="Spring collection.")

    def test_order_prefix_prompt_style_campaign_suffix(self, campaign: Campaign) -> None:
        studio = StylePreset.objects.create(
            brand=campaign.brand, name="Studio", prompt="  white backdrop  "
        )
        composed = compose_prompt(campaign, "  a mug ", studio)
        assert composed.final == (
            "Product photo for Meadow & Co.:\n\na mug\n\nwhite backdrop\n\n"
            "Spring collection.\n\nPastel palette, soft daylight."
        )
        assert composed.written == "a mug"
        # build_prompt is the one place: compose gives the same string.
        assert composed.final == campaign.build_prompt("a mug", "white backdrop")

    def test_without_brand_as_before(self) -> None:
        campaign = make_campaign(brand_prompt=" Pastel. ")
        assert compose_prompt(campaign, "a mug").final == "a mug\n\nPastel."
        assert campaign.effective_aspect_ratio() == "1:1"
        assert campaign.effective_negative_prompt() == ""

    def test_campaign_defaults_override_the_brand_where_set(self, campaign: Campaign) -> None:
        assert campaign.effective_aspect_ratio() == "4:3"
        assert campaign.effective_negative_prompt() == "text, watermark"
        campaign.default_aspect_ratio = "9:16"
        campaign.default_negative_prompt = "people"
        assert campaign.effective_aspect_ratio() == "9:16"
        assert campaign.effective_negative_prompt() == "people"

    def test_template_filled_then_words_added(self, campaign: Campaign) -> None:
        template = PromptTemplate(
            brand=campaign.brand, name="Hero", text="A {product} on a {surface}"
        )
        template.save()
        composed = compose_prompt(
            campaign, "morning light", None, template, {"product": "mug", "surface": "desk"}
        )
        assert composed.written == "A mug on a desk\n\nmorning light"
        assert composed.final.startswith("Product photo for Meadow & Co.:\n\nA mug on a desk\n\n")
        assert composed.template_version == template.versions.get(number=1)

    def test_values_without_a_template_are_refused(self, campaign: Campaign) -> None:
        with pytest.raises(PlaceholderError, match=r"\{product\}"):
            compose_prompt(campaign, "a mug", None, None, {"product": "mug"})

    def test_nothing_written_is_refused(self, campaign: Campaign) -> None:
        with pytest.raises(PromptError, match="Write a prompt"):
            compose_prompt(campaign, "   ")

    def test_another_brands_preset_or_template_is_refused(self, campaign: Campaign) -> None:
        other = Brand.objects.create(name="Other")
        preset = StylePreset.objects.create(brand=other, name="Noir", prompt="noir")
        with pytest.raises(PromptError, match="another brand"):
            compose_prompt(campaign, "a mug", preset)

    @pytest.mark.parametrize(
        ("prompt", "term"),
        [("A NIKE shoe", "Nike"), ("穿耐克的跑者", "耐克"), ("A Red  Bull can", "red bull")],
    )
    def test_banned_term_is_refused_naming_it(
        self, campaign: Campaign, prompt: str, term: str
    ) -> None:
        with pytest.raises(BannedTermError) as caught:
            compose_prompt(campaign, prompt)
        assert caught.value.term == term
        assert f"“{term}”" in str(caught.value)

    def test_banned_term_in_a_placeholder_value_is_refused(self, campaign: Campaign) -> None:
        template = PromptTemplate(brand=campaign.brand, name="Hero", text="A {product}")
        template.save()
        with pytest.raises(BannedTermError):
            compose_prompt(campaign, "", None, template, {"product": "nike trainer"})

    def test_brand_words_may_not_hold_a_banned_term(self, brand: Brand) -> None:
        brand.prompt_suffix = "Not Nike."
        with pytest.raises(ValidationError) as caught:
            brand.full_clean()
        assert "prompt_suffix" in caught.value.message_dict


@pytest.mark.django_db
class TemplateVersionTests:
    def test_every_change_keeps_a_version_with_who_and_when(self) -> None:
        User = get_user_model()
        ann, bob = User.objects.create_user("ann"), User.objects.create_user("bob")
        brand = Brand.objects.create(name="B")
        template = PromptTemplate(brand=brand, name="Hero", text="A {product}")
        template.save(changed_by=ann)
        template.save(changed_by=bob)  # nothing changed: no new version
        template.text = "A {product} on a {surface}"
        template.save(changed_by=bob)

        rows = list(template.versions.order_by("number"))
        assert [(v.number, v.text, v.changed_by) for v in rows] == [
            (1, "A {product}", ann),
            (2, "A {product} on a {surface}", bob),
        ]
        template.refresh_from_db()
        assert (template.version, template.updated_by) == (2, bob)
        assert template.current_version() == rows[1]

    def test_a_template_with_a_bad_brace_does_not_validate(self) -> None:
        template = PromptTemplate(brand=Brand.objects.create(name="B"), name="T", text="A {x")
        with pytest.raises(ValidationError) as caught:
            template.full_clean()
        assert "text" in caught.value.message_dict


@pytest.mark.django_db
class RequestImagesBrandTests:
    @pytest.fixture
    def campaign(self) -> Campaign:
        brand = Brand.objects.create(
            name="Meadow", prompt_suffix="Pastel.", banned_terms="Nike\n耐克"
        )
        return make_campaign(brand=brand, budget=10)

    @pytest.mark.parametrize("prompt", ["a nike trainer", "穿耐克的跑者"])
    def test_banned_term_refused_before_anything_is_saved_or_queued(
        self,
        campaign: Campaign,
        enqueued: Any,
        django_capture_on_commit_callbacks: Any,
        prompt: str,
    ) -> None:
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(services.PromptRefused) as caught,
        ):
            services.request_images(campaign=campaign, prompt=prompt)
        assert caught.value.term in ("Nike", "耐克")
        assert caught.value.term in str(caught.value)
        assert not GenerationRequest.objects.exists()
        assert not GenerationTask.objects.exists()
        assert not GeneratedImage.objects.exists()
        assert enqueued == []
        assert campaign.committed_spend() == 0

    def test_request_records_template_version_values_and_preset(
        self, campaign: Campaign, enqueued: Any
    ) -> None:
        template = PromptTemplate(brand=campaign.brand, name="Hero", text="A {product}")
        template.save()
        template.text = "A {product}, centred"
        template.save()
        preset = StylePreset.objects.create(brand=campaign.brand, name="Studio", prompt="studio")

        (task,) = services.request_images(
            campaign=campaign,
            template=template,
            template_values={"product": "mug"},
            style_preset=preset,
        )
        request = task.request
        assert request is not None
        assert request.template_version == PromptTemplateVersion.objects.get(
            template=template, number=2
        )
        assert request.template_values == {"product": "mug"}
        assert request.style_preset == preset
        assert request.prompt == "A mug, centred"
        assert task.prompt == "A mug, centred\n\nstudio\n\nPastel."
        assert task.request_body["prompt"] == task.prompt

    def test_brand_defaults_apply_when_the_campaign_has_none(self, enqueued: Any) -> None:
        brand = Brand.objects.create(
            name="B", default_aspect_ratio="9:16", default_negative_prompt="text"
        )
        campaign = make_campaign(brand=brand, default_provider="wavespeed")
        (task,) = services.request_images(campaign=campaign, prompt="a mug")
        assert (task.aspect_ratio, task.negative_prompt) == ("9:16", "text")


@pytest.mark.django_db
class GenerateCommandBrandTests:
    def run(self, *args: str) -> tuple[str, str, CommandError | None]:
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("imagen_generate", *args, stdout=out, stderr=err)
        except CommandError as exc:
            return out.getvalue(), err.getvalue(), exc
        return out.getvalue(), err.getvalue(), None

    @pytest.fixture
    def campaign(self) -> Campaign:
        brand = Brand.objects.create(name="Meadow", banned_terms="Nike")
        PromptTemplate(brand=brand, name="Hero", text="A {product} on a {surface}").save()
        StylePreset.objects.create(brand=brand, name="Studio", prompt="studio light")
        return make_campaign("spring", brand=brand)

    def test_template_values_and_style(self, campaign: Campaign, enqueued: Any) -> None:
        _out, err, error = self.run(
            "--campaign", "spring", "--template", "Hero", "--value", "product=mug",
            "--value", "surface=oak desk", "--style", "Studio",
        )  # fmt: skip
        assert error is None, err
        task = GenerationTask.objects.get()
        assert task.prompt == "A mug on a oak desk\n\nstudio light"

    def test_banned_term_refused_naming_it(self, campaign: Campaign, enqueued: Any) -> None:
        _out, err, error = self.run("--campaign", "spring", "--prompt", "Nike trainers")
        assert error is not None
        assert "“Nike”" in err
        assert not GenerationTask.objects.exists()

    def test_unfilled_placeholder_refused(self, campaign: Campaign, enqueued: Any) -> None:
        _out, err, error = self.run(
            "--campaign", "spring", "--template", "Hero", "--value", "product=mug"
        )
        assert error is not None
        assert "{surface}" in err
        assert not GenerationTask.objects.exists()
