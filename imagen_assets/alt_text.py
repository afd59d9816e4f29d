"""Alt text: a short description of an image for people who cannot see it.

Every image gets one drafted from the marketer's prompt when its row is created, so it is
never empty; people edit it in the image admin. Alt text describes the image, it is not the
image: editing it changes no review state and is allowed on an approved image too.
"""

from __future__ import annotations

import re

#: Longest drafted alt text, in characters: screen readers read alt text in one breath,
#: and the usual advice is to keep it near 125 characters.
DRAFT_LENGTH = 125
#: Longest alt text stored (a person may write more than the draft).
MAX_LENGTH = 500

_SPACE = re.compile(r"\s+")


def draft(prompt: str, *, brand_words: str = "", length: int = DRAFT_LENGTH) -> str:
    """Alt text drafted from ``prompt``: the marketer's words without ``brand_words`` (the
    brand's prefix or suffix, when the prompt still carries them), on one line, cut at a
    word before ``length`` characters with an ellipsis, first letter capitalised.

    Empty only when the prompt is empty; callers fall back to a generic text then.
    """
    text = prompt or ""
    brand = (brand_words or "").strip()
    if brand:
        stripped = text.strip()
        if stripped.endswith(brand):
            text = stripped[: -len(brand)]
        elif stripped.startswith(brand):
            text = stripped[len(brand) :]
    text = _SPACE.sub(" ", text).strip(" \t\n,;:-\u2013\u2014")
    if len(text) > length:
        cut = text[: length - 1]
        if " " in cut[length // 2 :]:
            cut = cut[: cut.rindex(" ")]
        text = cut.rstrip(" ,;:-\u2013\u2014.") + "…"
    return text[:1].upper() + text[1:]
