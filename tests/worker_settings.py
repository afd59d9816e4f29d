"""The example site's settings with the images' storage swapped for
:class:`tests.faulty_storages.PausingStorage`, for worker processes a test kills mid-write
(``DJANGO_SETTINGS_MODULE=tests.worker_settings``, ``IMAGEN_TEST_PAUSE_FILE``)."""

from __future__ import annotations

import os

from campaigns.settings import *  # noqa: F403
from campaigns.settings import STORAGES, imagen_files_root

STORAGES["imagen"] = {
    "BACKEND": "tests.faulty_storages.PausingStorage",
    "OPTIONS": {
        "location": imagen_files_root(os.environ),
        "pause_file": os.environ.get("IMAGEN_TEST_PAUSE_FILE", ""),
        "pause_after": int(os.environ.get("IMAGEN_TEST_PAUSE_AFTER", "1")),
    },
}
