"""The one setting, read lazily: defaults, live overrides, loud typos."""

from __future__ import annotations

import pytest
from django.test import override_settings

from imagen_assets import conf


class DefaultsTests:
    def test_every_key_has_its_documented_default_when_unset(self, settings):
        del settings.IMAGEN_ASSETS

        assert conf.get("DEFAULT_PROVIDER") == "sandbox"
        assert conf.get("PROVIDERS") == {}
        assert conf.get("WEBHOOK_BASE_URL") is None
        assert conf.get("QUEUE") == "default"
        assert conf.get("STORAGE") == "default"
        assert conf.get("DOWNLOAD_MAX_BYTES") == 40 * 1024 * 1024
        assert conf.get("MAX_IMAGE_PIXELS") == 8_388_608
        assert conf.get("WEBHOOK_TOLERANCE") == 300
        assert conf.get("WEBHOOK_MAX_BODY") == 256 * 1024
        assert conf.get("MAX_IMAGES_PER_REQUEST") == 100
        assert {name: conf.get(name) for name in conf.DEFAULTS} == conf.DEFAULTS

    @pytest.mark.parametrize("value", [None, {}])
    def test_an_empty_setting_means_all_defaults(self, settings, value):
        settings.IMAGEN_ASSETS = value

        assert conf.get("POLL_INTERVAL") == 0.5
        assert conf.user_settings() == {}

    def test_a_partial_setting_keeps_the_other_defaults(self, settings):
        settings.IMAGEN_ASSETS = {"QUEUE": "images"}

        assert conf.get("QUEUE") == "images"
        assert conf.get("STORAGE") == "default"


class LazyReadTests:
    def test_override_settings_is_seen_at_once(self):
        with override_settings(IMAGEN_ASSETS={"THUMBNAIL_SIZE": 123}):
            assert conf.get("THUMBNAIL_SIZE") == 123
            assert conf.get("THUMBNAIL_SIZE") == 123
            with override_settings(IMAGEN_ASSETS={"THUMBNAIL_SIZE": 77}):
                assert conf.get("THUMBNAIL_SIZE") == 77
            assert conf.get("THUMBNAIL_SIZE") == 123

    def test_a_change_after_import_is_seen_without_reloading(self, settings):
        settings.IMAGEN_ASSETS = {"POLL_MAX_INTERVAL": 5.0}
        assert conf.get("POLL_MAX_INTERVAL") == 5.0

        settings.IMAGEN_ASSETS = {"POLL_MAX_INTERVAL": 9.0}
        assert conf.get("POLL_MAX_INTERVAL") == 9.0

    def test_user_settings_is_a_copy(self, settings):
        settings.IMAGEN_ASSETS = {"QUEUE": "images"}

        conf.user_settings()["QUEUE"] = "changed"

        assert conf.get("QUEUE") == "images"


class UnknownKeyTests:
    def test_get_refuses_an_unknown_key(self):
        with pytest.raises(KeyError, match="POLL_INTERVALL"):
            conf.get("POLL_INTERVALL")

    def test_an_unknown_key_in_the_setting_is_not_readable_either(self, settings):
        settings.IMAGEN_ASSETS = {"SECRET_SAUCE": 1}

        with pytest.raises(KeyError):
            conf.get("SECRET_SAUCE")
