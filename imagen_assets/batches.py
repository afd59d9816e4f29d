"""Batches: many prompts (typed one per line, or a CSV file) times several aspect ratios.

One parser for the admin's "Generate a batch" and ``imagen_generate --from-csv``:

- :func:`parse_lines`: one prompt per non-empty line;
- :func:`parse_csv`: a header row naming the columns ``prompt`` (required),
  ``aspect_ratio``, ``count``, ``negative_prompt`` and ``alt_text`` in any order; UTF-8,
  with or without a byte-order mark; fields with commas, quotes or line breaks in double
  quotes, as spreadsheets write them.

Both give :class:`BatchRow` objects, or raise :class:`BatchParseError` listing every bad
line by its number. :func:`expand` turns rows into the service's
:class:`~imagen_assets.services.ImageLine` (a row without its own aspect ratio is made at
each of the chosen ones) and :func:`matrix` lays them out for people: prompts down,
aspect ratios across, images in the cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.utils.translation import gettext as _

from imagen_assets import conf
from imagen_assets.imagen_sizes import ASPECT_RATIOS
from imagen_assets.services import ImageLine

#: The columns a CSV may have; ``prompt`` is required.
COLUMNS = ("prompt", "aspect_ratio", "count", "negative_prompt", "alt_text")
#: Most bad lines listed in one refusal (the rest are counted).
MAX_ERRORS = 20


@dataclass(frozen=True)
class BatchRow:
    """One prompt of a batch, as written: None where the line left a value to the form."""

    line: int
    prompt: str
    aspect_ratio: str | None = None
    count: int | None = None
    negative_prompt: str | None = None
    alt_text: str = ""


class BatchParseError(ValueError):
    """The batch cannot be read; ``errors`` says what is wrong, one message per bad line."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:MAX_ERRORS]
        more = len(self.errors) - len(shown)
        if more > 0:
            shown.append(_("…and %(count)d more.") % {"count": more})
        super().__init__("\n".join(shown))


def _line_error(line: int, message: str) -> str:
    return _("Line %(line)d: %(message)s") % {"line": line, "message": message}


def parse_lines(text: str) -> list[BatchRow]:
    """One prompt per line of ``text``; empty lines are skipped, numbers are the text's."""
    rows = [
        BatchRow(line=number, prompt=line.strip())
        for number, line in enumerate((text or "").splitlines(), start=1)
        if line.strip()
    ]
    if not rows:
        raise BatchParseError([_("Write at least one prompt, one per line.")])
    return rows


def decode(data: bytes) -> str:
    """``data`` as text: UTF-8, a leading byte-order mark dropped; refused otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BatchParseError(
            [
                _line_error(
                    line,
                    _(
                        "this is not UTF-8 text. Save the file as “CSV UTF-8” (in Excel: "
                        "Save As, CSV UTF-8) and upload it again."
                    ),
                )
            ]
        ) from None


def parse_csv(data: bytes | str) -> list[BatchRow]:
    """The rows of a CSV batch (see the module's docstring); every bad line is reported."""
    text = decode(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors: list[str] = []
    rows: list[BatchRow] = []
    header: list[str] | None = None
    per_line = conf.get("MAX_IMAGES_PER_REQUEST")
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(
                _line_error(
                    start,
                    _("the CSV cannot be read here (%(reason)s); check its double quotes.")
                    % {"reason": exc},
                )
            )
            break
        line, start = start, reader.line_num + 1
        values = [value.strip() for value in record]
        if not any(values):
            continue
        if header is None:
            header = [value.lower().replace(" ", "_") for value in values]
            unknown = [name for name in header if name not in COLUMNS]
            if "prompt" not in header or unknown:
                errors.append(
                    _line_error(
                        line,
                        _(
                            "the first line must name the columns: prompt, and optionally "
                            "%(optional)s (found: %(found)s)."
                        )
                        % {"optional": ", ".join(COLUMNS[1:]), "found": ", ".join(values)},
                    )
                )
                break
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                errors.append(
                    _line_error(
                        line,
                        _("the column %(names)s is named twice.")
                        % {"names": ", ".join(duplicated)},
                    )
                )
                break
            continue
        if len(values) > len(header) and any(values[len(header) :]):
            errors.append(
                _line_error(
                    line,
                    _(
                        "%(found)d values but %(columns)d columns; put a prompt that "
                        "contains commas in double quotes."
                    )
                    % {"found": len(values), "columns": len(header)},
                )
            )
            continue
        cells = dict(zip(header, values, strict=False))
        row, problems = _row(line, cells, per_line)
        errors.extend(_line_error(line, problem) for problem in problems)
        if row is not None:
            rows.append(row)
    if header is None and not errors:
        errors.append(_("The file is empty: write a header line, then one prompt per line."))
    elif not rows and not errors:
        errors.append(_("The file has a header but no prompt."))
    if errors:
        raise BatchParseError(errors)
    return rows


def _row(line: int, cells: dict[str, str], per_line: int) -> tuple[BatchRow | None, list[str]]:
    problems: list[str] = []
    prompt = cells.get("prompt", "")
    if not prompt:
        problems.append(_("the prompt is empty."))
    ratio = cells.get("aspect_ratio") or None
    if ratio is not None and ratio not in ASPECT_RATIOS:
        problems.append(
            _("the aspect ratio “%(ratio)s” is not one of %(ratios)s.")
            % {"ratio": ratio, "ratios": ", ".join(ASPECT_RATIOS)}
        )
    count: int | None = None
    raw_count = cells.get("count", "")
    if raw_count:
        try:
            count = int(raw_count)
        except ValueError:
            count = 0
        if not 1 <= count <= per_line:
            problems.append(
                _("the count “%(count)s” is not a whole number from 1 to %(limit)d.")
                % {"count": raw_count, "limit": per_line}
            )
    if problems:
        return None, problems
    negative = cells.get("negative_prompt")
    return (
        BatchRow(
            line=line,
            prompt=prompt,
            aspect_ratio=ratio,
            count=count,
            negative_prompt=negative or None,
            alt_text=cells.get("alt_text", ""),
        ),
        [],
    )


def expand(
    rows: Iterable[BatchRow],
    *,
    aspect_ratios: Sequence[str | None],
    count: int,
    negative_prompt: str | None = None,
) -> list[ImageLine]:
    """The request's lines: each row at its own aspect ratio, else at each of
    ``aspect_ratios``; ``count`` images where the row names none; ``negative_prompt``
    where it has none (None: the campaign's)."""
    lines: list[ImageLine] = []
    for row in rows:
        for ratio in [row.aspect_ratio] if row.aspect_ratio else aspect_ratios:
            lines.append(
                ImageLine(
                    prompt=row.prompt,
                    count=row.count or count,
                    aspect_ratio=ratio,
                    negative_prompt=(
                        row.negative_prompt if row.negative_prompt is not None else negative_prompt
                    ),
                    alt_text=row.alt_text,
                    line=row.line,
                )
            )
    return lines


@dataclass(frozen=True)
class MatrixRow:
    line: int | None
    prompt: str
    #: Images at each of the matrix's aspect ratios (0: not asked for).
    cells: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.cells)


@dataclass(frozen=True)
class Matrix:
    """Prompts down, aspect ratios across, images in the cells."""

    ratios: tuple[str, ...]
    rows: tuple[MatrixRow, ...]

    @property
    def column_totals(self) -> tuple[int, ...]:
        return tuple(sum(row.cells[i] for row in self.rows) for i in range(len(self.ratios)))

    @property
    def total(self) -> int:
        return sum(row.total for row in self.rows)


def matrix(lines: Iterable[ImageLine]) -> Matrix:
    """Lay ``lines`` out as a :class:`Matrix`, one row per source line (or prompt)."""
    lines = list(lines)
    used = {line.aspect_ratio for line in lines}
    ratios = tuple(ratio for ratio in ASPECT_RATIOS if ratio in used)
    ratios += tuple(sorted(ratio for ratio in used if ratio and ratio not in ASPECT_RATIOS))
    order: dict[tuple[int | None, str], dict[str, int]] = {}
    for line in lines:
        cells = order.setdefault((line.line, line.prompt), {})
        key = line.aspect_ratio or ""
        cells[key] = cells.get(key, 0) + line.count
    return Matrix(
        ratios=ratios,
        rows=tuple(
            MatrixRow(
                line=number,
                prompt=prompt,
                cells=tuple(cells.get(ratio, 0) for ratio in ratios),
            )
            for (number, prompt), cells in order.items()
        ),
    )
