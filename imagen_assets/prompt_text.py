"""Prompt text on its own (no database): template placeholders and banned terms.

Below the models (which validate with it); :mod:`imagen_assets.prompts` composes the final
prompt from a campaign, its brand and these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from django.utils.translation import gettext as _

#: ``{{`` and ``}}`` (a brace itself), a ``{placeholder}``, or a brace left alone.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
#: A placeholder's name: letters (any script), digits and underscores.
_NAME = re.compile(r"\w+")

#: Scripts written without spaces between words, where a banned term matches anywhere:
#: CJK punctuation, kana, CJK ideographs (and extensions), Hangul, full-width forms.
_CJK = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)


class PromptError(ValueError):
    """The prompt cannot be made as asked; the message is meant for the marketer."""


class PlaceholderError(PromptError):
    """A template's placeholders were not filled as they must be."""

    def __init__(self, message: str, names: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.names = list(names)


class BannedTermError(PromptError):
    """The prompt contains one of the brand's banned terms (``term``, as the brand wrote it)."""

    def __init__(self, message: str, term: str) -> None:
        super().__init__(message)
        self.term = term


def is_cjk(char: str) -> bool:
    return bool(_CJK.match(char))


def _tokens(text: str) -> Iterable[tuple[str, str]]:
    """(kind, value) pieces of a template: ("text", ...) and ("name", ...)."""
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            yield "text", text[position : match.start()]
        token = match.group(0)
        if token in ("{{", "}}"):
            yield "text", token[0]
        elif match.group(1) is None:
            raise PlaceholderError(
                _(
                    "A lone “%(brace)s” in the template: write a placeholder as {name}, or "
                    "double the brace to keep it as text."
                )
                % {"brace": token}
            )
        else:
            name = match.group(1).strip()
            if not _NAME.fullmatch(name):
                raise PlaceholderError(
                    _(
                        "“%(placeholder)s” is not a placeholder: a name is letters, digits "
                        "and _ only, e.g. {product}."
                    )
                    % {"placeholder": token}
                )
            yield "name", name
        position = match.end()
    if position < len(text):
        yield "text", text[position:]


def placeholders(text: str) -> list[str]:
    """The placeholder names of a template, in order of first use; raises
    :class:`PlaceholderError` for a brace that is neither a placeholder nor doubled."""
    names: list[str] = []
    for kind, value in _tokens(text):
        if kind == "name" and value not in names:
            names.append(value)
    return names


def fill(text: str, values: Mapping[str, str]) -> str:
    """The template with each placeholder replaced by its value (stripped).

    Every placeholder must have a non-empty value and every value a placeholder:
    :class:`PlaceholderError` names the ones that do not.
    """
    names = placeholders(text)
    missing = [name for name in names if not str(values.get(name) or "").strip()]
    if missing:
        raise PlaceholderError(
            _("Fill in the template's %(names)s.")
            % {"names": ", ".join(f"{{{name}}}" for name in missing)},
            missing,
        )
    unknown = [name for name in values if name not in names]
    if unknown:
        raise PlaceholderError(
            _("The template has no %(names)s; it has %(known)s.")
            % {
                "names": ", ".join(f"{{{name}}}" for name in unknown),
                "known": ", ".join(f"{{{name}}}" for name in names) or _("no placeholders"),
            },
            unknown,
        )
    return "".join(
        str(values[value]).strip() if kind == "name" else value for kind, value in _tokens(text)
    )


def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in term.split()]
    return re.compile(r"\s+".join(words), re.IGNORECASE)


def _is_word_char(char: str) -> bool:
    """A character that continues a word written with spaces (Latin "cat" in "cats")."""
    return (char.isalnum() or char == "_") and not is_cjk(char)


def contains_term(text: str, term: str) -> bool:
    """Whether ``text`` contains ``term``: case-insensitive, any run of spaces matching a
    space, as a whole word or phrase; at an end written in Chinese, Japanese or Korean
    (no spaces between words) anywhere, so “耐克” is found in “穿耐克的跑者”."""
    term = term.strip()
    if not term:
        return False
    for match in _term_pattern(term).finditer(text):
        start, end = match.start(), match.end()
        if _is_word_char(term[0]) and start > 0 and _is_word_char(text[start - 1]):
            continue
        if _is_word_char(term[-1]) and end < len(text) and _is_word_char(text[end]):
            continue
        return True
    return False


def find_banned_term(text: str, terms: Iterable[str]) -> str | None:
    """The first of ``terms`` that ``text`` contains (see :func:`contains_term`), or None."""
    for term in terms:
        if contains_term(text, term):
            return term.strip()
    return None
