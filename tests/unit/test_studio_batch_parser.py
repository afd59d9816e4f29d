"""The batch parser (imagen_assets.batches) and the alt text draft (imagen_assets.alt_text)."""

from __future__ import annotations

import pytest

from imagen_assets import alt_text, batches
from imagen_assets.batches import BatchParseError, BatchRow


def errors_of(data: bytes | str) -> list[str]:
    with pytest.raises(BatchParseError) as caught:
        batches.parse_csv(data)
    return caught.value.errors


class CsvTests:
    def test_header_and_columns_in_any_order(self) -> None:
        rows = batches.parse_csv(b"count,prompt,aspect_ratio\n2,A lighthouse,16:9\n")
        assert rows == [BatchRow(line=2, prompt="A lighthouse", aspect_ratio="16:9", count=2)]

    def test_a_byte_order_mark_is_dropped(self) -> None:
        rows = batches.parse_csv("\ufeffprompt\nA lighthouse\n".encode())
        assert rows == [BatchRow(line=2, prompt="A lighthouse")]

    def test_the_same_without_a_byte_order_mark(self) -> None:
        assert batches.parse_csv(b"prompt\nA lighthouse\n") == [
            BatchRow(line=2, prompt="A lighthouse")
        ]

    def test_quoted_fields_keep_commas_quotes_and_line_breaks(self) -> None:
        data = b'prompt,alt_text\n"Tea, two cups","A ""cosy"" table"\n"Two\nlines",\nNext,\n'
        rows = batches.parse_csv(data)
        assert [(r.line, r.prompt, r.alt_text) for r in rows] == [
            (2, "Tea, two cups", 'A "cosy" table'),
            (3, "Two\nlines", ""),
            (5, "Next", ""),  # numbered by where it starts in the file
        ]

    def test_chinese_text(self) -> None:
        # A full-width comma (U+FF0C) inside Chinese text is text, not a separator.
        prompt = "春天的樱花\uff0c柔和的晨光"
        data = f"\ufeffprompt,negative_prompt,alt_text\n{prompt},文字,樱花树下的长椅\n"
        [row] = batches.parse_csv(data.encode())
        assert row.prompt == prompt
        assert row.negative_prompt == "文字"
        assert row.alt_text == "樱花树下的长椅"

    def test_empty_lines_are_skipped_and_cells_trimmed(self) -> None:
        rows = batches.parse_csv(b"prompt,count\n\n  Surf at dawn , 3 \n,\n")
        assert rows == [BatchRow(line=3, prompt="Surf at dawn", count=3)]

    def test_every_bad_line_is_named(self) -> None:
        data = (
            b"prompt,aspect_ratio,count\n"
            b"Good,1:1,1\n"
            b",1:1,1\n"
            b"Wide,21:9,1\n"
            b"Many,16:9,101\n"
            b"Words,16:9,two\n"
            b"Too,many,1,values\n"
        )
        errors = errors_of(data)
        assert len(errors) == 5, errors
        assert errors[0].startswith("Line 3: ") and "prompt is empty" in errors[0]
        assert errors[1].startswith("Line 4: ") and "21:9" in errors[1]
        assert errors[2].startswith("Line 5: ") and "101" in errors[2] and "1 to 100" in errors[2]
        assert errors[3].startswith("Line 6: ") and "two" in errors[3]
        assert errors[4].startswith("Line 7: ") and "double quotes" in errors[4]

    def test_a_broken_quote_is_named_by_its_line(self) -> None:
        [error] = errors_of(b'prompt\nFine\n"Open quote never closed\n')
        assert error.startswith("Line 3: ") and "double quotes" in error

    def test_a_missing_header_is_refused(self) -> None:
        [error] = errors_of(b"A lighthouse,16:9\n")
        assert error.startswith("Line 1: ") and "prompt" in error

    def test_an_unknown_column_is_refused(self) -> None:
        [error] = errors_of(b"prompt,ratio\nA,1:1\n")
        assert "ratio" in error and "aspect_ratio" in error

    def test_not_utf8_is_refused_with_advice(self) -> None:
        [error] = errors_of("prompt\nCafé\n".encode("latin-1"))
        assert error.startswith("Line 2: ") and "UTF-8" in error

    def test_empty_file_and_header_only(self) -> None:
        assert "empty" in errors_of(b"")[0]
        assert "no prompt" in errors_of(b"prompt\n")[0]

    def test_many_errors_are_summed_up(self) -> None:
        data = b"prompt,count\n" + b"x,0\n" * 30
        with pytest.raises(BatchParseError) as caught:
            batches.parse_csv(data)
        assert len(caught.value.errors) == 30
        assert str(caught.value).endswith("and 10 more.")


class LinesTests:
    def test_one_prompt_per_line(self) -> None:
        rows = batches.parse_lines("First\n\n  Second  \r\nThird")
        assert [(r.line, r.prompt) for r in rows] == [(1, "First"), (3, "Second"), (4, "Third")]

    def test_nothing_written_is_refused(self) -> None:
        with pytest.raises(BatchParseError):
            batches.parse_lines(" \n\n")


class ExpandTests:
    def test_rows_times_ratios_with_their_own_values_first(self) -> None:
        rows = [
            BatchRow(line=2, prompt="A"),
            BatchRow(line=3, prompt="B", aspect_ratio="9:16", count=3, negative_prompt="text"),
        ]
        lines = batches.expand(rows, aspect_ratios=["1:1", "16:9"], count=2, negative_prompt="")
        assert [(x.prompt, x.aspect_ratio, x.count, x.negative_prompt, x.line) for x in lines] == [
            ("A", "1:1", 2, "", 2),
            ("A", "16:9", 2, "", 2),
            ("B", "9:16", 3, "text", 3),
        ]
        grid = batches.matrix(lines)
        assert grid.ratios == ("1:1", "9:16", "16:9")
        assert [row.cells for row in grid.rows] == [(2, 0, 2), (0, 3, 0)]
        assert grid.column_totals == (2, 3, 2)
        assert grid.total == 7


class AltTextDraftTests:
    def test_capitalised_and_on_one_line(self) -> None:
        assert alt_text.draft("  a red bicycle\n by the sea ") == "A red bicycle by the sea"

    def test_the_brand_words_are_left_out(self) -> None:
        final = "a red bicycle by the sea\n\nPastel palette, soft daylight."
        draft = alt_text.draft(final, brand_words="Pastel palette, soft daylight.")
        assert draft == "A red bicycle by the sea"
        prefixed = "Brand style: flat. a kite"
        assert alt_text.draft(prefixed, brand_words="Brand style: flat.") == "A kite"

    def test_long_prompts_are_cut_at_a_word(self) -> None:
        prompt = "a lighthouse " * 30
        draft = alt_text.draft(prompt)
        assert len(draft) <= alt_text.DRAFT_LENGTH
        assert draft.endswith("…")
        assert set(draft[:-1].lower().split()) == {"a", "lighthouse"}  # whole words only

    def test_chinese_prompts(self) -> None:
        assert alt_text.draft("春天的樱花") == "春天的樱花"
        assert len(alt_text.draft("樱" * 300)) == alt_text.DRAFT_LENGTH


class BatchLimitCheckTests:
    """W080: MAX_IMAGES_PER_BATCH a whole number of at least MAX_IMAGES_PER_REQUEST."""

    @pytest.mark.parametrize("value", [None, "500", 2.5, True, 99])
    def test_w080_a_batch_limit_that_is_not_a_whole_number_or_too_small(self, settings, value):
        from unit_helpers import imagen_settings

        from imagen_assets.checks import check_settings

        settings.IMAGEN_ASSETS = imagen_settings(MAX_IMAGES_PER_BATCH=value)
        # A Wave model still served: the default, imagen-4.0, is retired (W040).
        settings.IMAGEN_ASSETS["PROVIDERS"]["wave"]["OPTIONS"]["MODEL"] = "still-served"
        messages = check_settings()
        assert [m.id for m in messages] == ["imagen_assets.W080"]
        assert "MAX_IMAGES_PER_BATCH" in messages[0].msg

    def test_equal_to_the_request_limit_is_fine(self, settings):
        from unit_helpers import imagen_settings

        from imagen_assets.checks import check_settings

        settings.IMAGEN_ASSETS = imagen_settings(MAX_IMAGES_PER_BATCH=100)
        settings.IMAGEN_ASSETS["PROVIDERS"]["wave"]["OPTIONS"]["MODEL"] = "still-served"
        assert check_settings() == []
