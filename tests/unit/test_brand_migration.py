"""The brand kit's migration: each distinct brand prompt becomes a brand its campaigns use,
and the prompt they send is the same as before."""

from __future__ import annotations

from typing import Any

BEFORE = [("imagen_assets", "0011_user_quotas")]
AFTER = [("imagen_assets", "0012_brand_kit")]


class BrandKitMigrationTests:
    def test_brand_prompts_become_shared_brands_and_back(self, migrate: Any) -> None:
        old = migrate(BEFORE)
        Campaign = old.get_model("imagen_assets", "Campaign")
        Campaign.objects.create(name="Spring", slug="spring", brand_prompt=" Pastel. ")
        Campaign.objects.create(name="Summer", slug="summer", brand_prompt="Pastel.")
        Campaign.objects.create(name="Autumn", slug="autumn", brand_prompt="Warm.")
        Campaign.objects.create(name="Plain", slug="plain", default_aspect_ratio="4:3")

        new = migrate(AFTER)
        Campaign = new.get_model("imagen_assets", "Campaign")
        Brand = new.get_model("imagen_assets", "Brand")
        rows = {
            c.slug: (c.brand.name if c.brand else None, c.brand_prompt, c.default_aspect_ratio)
            for c in Campaign.objects.select_related("brand")
        }
        assert rows == {
            "spring": ("Spring", "", "1:1"),
            "summer": ("Spring", "", "1:1"),  # the same words: the same brand
            "autumn": ("Autumn", "", "1:1"),
            "plain": (None, "", "4:3"),
        }
        assert dict(Brand.objects.values_list("name", "prompt_suffix")) == {
            "Spring": "Pastel.",
            "Autumn": "Warm.",
        }

        back = migrate(BEFORE)
        Campaign = back.get_model("imagen_assets", "Campaign")
        assert dict(Campaign.objects.values_list("slug", "brand_prompt")) == {
            "spring": "Pastel.",
            "summer": "Pastel.",
            "autumn": "Warm.",
            "plain": "",
        }
