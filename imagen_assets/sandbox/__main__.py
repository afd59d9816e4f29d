"""``python -m imagen_assets.sandbox [--port 8765] [--latency 2] ...``"""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
