"""``imagen_generate --from-csv FILE``: the admin's batch from the command line, with the
same parser and the same all-or-nothing; ``--dry-run`` prints without spending."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from unit_helpers import make_campaign

from imagen_assets.models import Campaign, GeneratedImage, GenerationRequest, GenerationTask

pytestmark = pytest.mark.django_db

CSV = '\ufeffprompt,aspect_ratio,count,alt_text\n"Tea, two cups",,2,\n春天的樱花,9:16,1,樱花\n'


def run(*args: Any) -> tuple[str, str, CommandError | None]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("imagen_generate", *[str(a) for a in args], stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "batch.csv"
    path.write_bytes(CSV.encode())
    return path


class FromCsvTests:
    def test_makes_one_batch_and_prints_the_matrix_and_price(self, csv_file) -> None:
        campaign = make_campaign("spring", budget=Decimal("5.00"))
        out, err, error = run(
            "--campaign", "spring", "--from-csv", csv_file, "--aspect-ratio", "1:1,16:9"
        )
        assert error is None, err
        [request] = GenerationRequest.objects.all()
        assert (request.origin, request.count, request.campaign_id) == ("batch", 5, campaign.pk)
        cells = {
            (t.prompt, t.aspect_ratio): t.num_images
            for t in GenerationTask.objects.filter(request=request)
        }
        assert cells == {
            ("Tea, two cups", "1:1"): 2,
            ("Tea, two cups", "16:9"): 2,
            ("春天的樱花", "9:16"): 1,
        }
        assert GeneratedImage.objects.get(task__aspect_ratio="9:16").alt_text == "樱花"
        lines = out.splitlines()
        assert lines[0].split() == ["line", "1:1", "9:16", "16:9", "images", "prompt"]
        assert lines[1].split() == ["2", "2", "-", "2", "4", "Tea,", "two", "cups"]
        assert lines[2].split() == ["3", "-", "1", "-", "1", "春天的樱花"]
        assert lines[3].split() == ["total", "2", "1", "2", "5"]
        assert "5 image(s) in 3 task(s) on WaveSpeed AI at $0.04 each: $0.20." in out
        assert "Budget left: $5.00 of $5.00." in out
        assert "Queued 5 image(s) in 3 task(s)" in out

    def test_dry_run_prints_and_spends_nothing(self, csv_file) -> None:
        make_campaign("spring")
        out, _err, error = run("--campaign", "spring", "--from-csv", csv_file, "--dry-run")
        assert error is None
        assert "Dry run: nothing was queued or spent." in out
        assert not GenerationRequest.objects.exists()
        assert not GenerationTask.objects.exists()

    def test_dry_run_of_a_new_campaign_creates_nothing(self, csv_file) -> None:
        out, _err, error = run(
            "--campaign", "Summer", "--from-csv", csv_file, "--dry-run", "--json"
        )
        assert error is None
        [plan] = [json.loads(line) for line in out.splitlines()]
        assert plan["dry_run"] is True and plan["images"] == 3 and plan["cost"] == "0.12"
        assert not Campaign.objects.exists()

    def test_dry_run_says_when_the_budget_would_refuse(self, csv_file) -> None:
        make_campaign("spring", budget=Decimal("0.10"))
        _out, _err, error = run("--campaign", "spring", "--from-csv", csv_file, "--dry-run")
        assert error is not None and error.returncode == 1
        assert str(error).startswith("Spring: This would cost $0.12 but only $0.10")

    def test_over_budget_makes_nothing(self, csv_file) -> None:
        make_campaign("spring", budget=Decimal("0.10"))
        _out, err, error = run("--campaign", "spring", "--from-csv", csv_file)
        assert error is not None and error.returncode == 1
        assert "This would cost $0.12 but only $0.10" in err
        assert not GenerationTask.objects.exists()

    def test_bad_lines_are_named_and_nothing_is_made(self, tmp_path) -> None:
        make_campaign("spring")
        bad = tmp_path / "bad.csv"
        bad.write_bytes(b"prompt,aspect_ratio\nFine,1:1\nWide,21:9\n")
        _out, err, error = run("--campaign", "spring", "--from-csv", bad)
        assert error is not None
        assert "Line 3: the aspect ratio “21:9”" in err
        assert not GenerationTask.objects.exists()

    def test_a_missing_file_is_a_usage_error(self, tmp_path) -> None:
        _out, _err, error = run("--campaign", "spring", "--from-csv", tmp_path / "none.csv")
        assert error is not None and error.returncode == 2
        assert "none.csv" in str(error)

    def test_prompt_and_csv_together_are_refused(self, csv_file) -> None:
        with pytest.raises(CommandError, match="leave out --prompt"):
            call_command(
                "imagen_generate", "--campaign", "x", "--prompt", "p", "--from-csv", str(csv_file)
            )

    def test_a_single_prompt_still_works_as_before(self) -> None:
        out, _err, error = run("--campaign", "spring", "--prompt", "A kite", "--count", "5")
        assert error is None
        [request] = GenerationRequest.objects.all()
        assert (request.origin, request.count, request.prompt) == ("new", 5, "A kite")
        assert "Queued 5 image(s) in 2 task(s) on wavespeed." in out
        assert "line" not in out.splitlines()[0]  # no matrix for a single request
