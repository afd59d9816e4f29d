"""Google Imagen 4's aspect ratios and output pixel sizes (docs/providers.md section 3).

Free of Django imports so the standalone sandbox server shares the same table.
"""

from __future__ import annotations

ASPECT_RATIOS: tuple[str, ...] = ("1:1", "3:4", "4:3", "9:16", "16:9")

SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
SIZES_2K: dict[str, tuple[int, int]] = {
    "1:1": (2048, 2048),
    "3:4": (1792, 2560),
    "4:3": (2560, 1792),
    "9:16": (1536, 2816),
    "16:9": (2816, 1536),
}
