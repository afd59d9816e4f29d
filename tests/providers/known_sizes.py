"""Imagen 4 output sizes written out from docs/providers.md section 3, so tests check the
code's table against the documented facts rather than against itself."""

SIZES_1K = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
SIZES_2K = {
    "1:1": (2048, 2048),
    "3:4": (1792, 2560),
    "4:3": (2560, 1792),
    "9:16": (1536, 2816),
    "16:9": (2816, 1536),
}
