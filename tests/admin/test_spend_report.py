"""The campaign page's spend section and imagen_assets.spending: by site day, provider and
person, estimated against charged, in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from imagen_assets import quotas, spending
from imagen_assets.admin.spend import chart, nice_ceiling
from imagen_assets.models import Campaign, GenerationTask
from imagen_assets.spending import SpendRow
from imagen_assets.status import CANCELLED_MAY_BILL

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """An aware UTC moment from "2026-03-09 22:30"."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def task(campaign: Campaign, make_task: Any, **fields: Any) -> GenerationTask:
    fields.setdefault("status", "succeeded")
    fields.setdefault("num_images", 4)
    fields.setdefault("estimated_cost", Decimal("0.16"))
    return make_task(campaign, **fields)


def page(client: Any, campaign: Campaign) -> str:
    response = client.get(reverse("admin:imagen_assets_campaign_change", args=[campaign.pk]))
    assert response.status_code == 200
    return response.content.decode()


class ByDayTests:
    def test_days_are_the_sites_days_across_midnight(self, settings, campaign, make_task):
        settings.TIME_ZONE = "Europe/Paris"  # UTC+1 in March
        task(campaign, make_task, created_at=at("2026-03-09 22:30"), cost=Decimal("0.12"))
        task(campaign, make_task, created_at=at("2026-03-09 23:30"), cost=Decimal("0.14"))

        rows = spending.by_day(campaign)

        # 23:30 Paris and 00:30 Paris: two days, although the same day in UTC.
        assert [(row.key, row.charged) for row in rows] == [
            (dt.date(2026, 3, 9), Decimal("0.12")),
            (dt.date(2026, 3, 10), Decimal("0.14")),
        ]

    def test_the_same_moments_are_one_day_in_utc(self, settings, campaign, make_task):
        settings.TIME_ZONE = "UTC"
        task(campaign, make_task, created_at=at("2026-03-09 22:30"), cost=Decimal("0.12"))
        task(campaign, make_task, created_at=at("2026-03-09 23:30"), cost=Decimal("0.14"))

        [row] = spending.by_day(campaign)

        assert (row.key, row.charged, row.images, row.tasks) == (
            dt.date(2026, 3, 9),
            Decimal("0.26"),
            8,
            2,
        )


class EstimatedAgainstChargedTests:
    @pytest.fixture
    def tasks(self, campaign, make_task, django_user_model):
        ann = django_user_model.objects.create_user("ann")
        bob = django_user_model.objects.create_user("bob")
        day = at("2026-05-04 10:00")
        # Delivered, billed less than estimated.
        task(
            campaign,
            make_task,
            provider="wave",
            estimated_cost=Decimal("0.17"),
            cost=Decimal("0.12"),
            requested_by=ann,
            created_at=day,
        )
        # Still running: its estimate is reserved.
        task(
            campaign,
            make_task,
            provider="wave",
            status="processing",
            estimated_cost=Decimal("0.17"),
            requested_by=bob,
            created_at=day,
        )
        # Failed and cancelled: not billed, not counted.
        task(
            campaign, make_task, provider="wave", status="failed", requested_by=ann, created_at=day
        )
        task(campaign, make_task, provider="wavespeed", status="cancelled", created_at=day)
        # Delivered with no requester recorded (a host's own code).
        task(
            campaign,
            make_task,
            provider="wavespeed",
            num_images=1,
            estimated_cost=Decimal("0.04"),
            cost=Decimal("0.04"),
            created_at=day,
        )
        return ann, bob

    def test_a_cancel_the_provider_may_still_bill_counts_everywhere_alike(
        self, campaign, tasks, make_task
    ):
        ann, _bob = tasks
        task(
            campaign,
            make_task,
            provider="wave",
            status="cancelled",
            error_code=CANCELLED_MAY_BILL,
            estimated_cost=Decimal("0.20"),
            requested_by=ann,
            created_at=at("2026-05-04 10:00"),
        )
        total = spending.campaign_spend(campaign, nobody="nobody").total
        # The budget, the report and the user's quota count its estimate alike.
        assert total.committed == Decimal("0.53") == campaign.committed_spend()
        used = quotas.used_today(ann.pk, now=at("2026-05-04 12:00"))
        assert used.spend == Decimal("0.12") + Decimal("0.20")  # charged + may be billed

    def test_totals_and_the_budgets_committed_spend_agree(self, campaign, tasks):
        report = spending.campaign_spend(campaign, nobody="nobody")
        total = report.total

        assert (total.estimated, total.charged, total.reserved) == (
            Decimal("0.38"),
            Decimal("0.16"),
            Decimal("0.17"),
        )
        assert total.committed == Decimal("0.33") == campaign.committed_spend()
        assert total.images == 9 and total.tasks == 3
        assert total.difference == Decimal("0.16") - Decimal("0.21")  # billed 5 cents less

    def test_by_provider_and_by_person(self, campaign, tasks):
        report = spending.campaign_spend(campaign, nobody="nobody")

        assert [
            (row.key, row.label, row.estimated, row.charged, row.reserved)
            for row in report.by_provider
        ] == [
            ("wave", "Wave", Decimal("0.34"), Decimal("0.12"), Decimal("0.17")),
            ("wavespeed", "WaveSpeed AI", Decimal("0.04"), Decimal("0.04"), Decimal("0")),
        ]
        assert [(row.label, row.committed, row.images) for row in report.by_user] == [
            ("bob", Decimal("0.17"), 4),
            ("ann", Decimal("0.12"), 4),
            ("nobody", Decimal("0.04"), 1),
        ]

    def test_the_campaign_page_shows_the_chart_and_the_tables(self, admin_client, campaign, tasks):
        html = page(admin_client, campaign)

        section = html[html.index('id="spend-report"') :]
        section = section[: section.index("</fieldset>")]
        assert '<svg class="imagen-chart"' in section
        assert 'role="img"' in section
        assert re.search(r'<title id="imagen-spend-chart-title">Spend per day from', section)
        assert (
            '<desc id="imagen-spend-chart-desc">Over these days $0.38 was estimated and '
            "$0.16 charged." in section
        )
        for table in ("spend-by-day", "spend-by-provider", "spend-by-user"):
            assert f'id="{table}"' in section
        provider_table = section[section.index('id="spend-by-provider"') :]
        provider_table = provider_table[: provider_table.index("</table>")]
        assert re.search(
            r"Wave</th>\s*<td[^>]*>8</td>\s*<td[^>]*>\$0.34</td>\s*"
            r"<td[^>]*>\$0.12</td>\s*<td[^>]*>\$0.17</td>",
            provider_table,
        )
        assert "nobody recorded" in section
        # Two bars for the one day: estimated $0.38 and charged $0.16, both titled.
        assert section.count('class="imagen-bar-estimated"') == 1
        assert ": estimated $0.38</title>" in section
        assert ": charged $0.16</title>" in section
        assert "cdn" not in section.lower() and "<script" not in section

    def test_no_amount_on_the_campaign_page_has_more_than_two_decimals(
        self, admin_client, campaign, make_task
    ):
        campaign.budget = Decimal("50.00")
        campaign.save()
        task(campaign, make_task, estimated_cost=Decimal("25.1275"), cost=Decimal("25.1275"))

        html = page(admin_client, campaign)

        assert "$24.87" in html  # left of the budget, not $24.8725
        assert "$25.13" in html
        assert not re.findall(r"\$[\d,]+\.\d{3,}", html)


class EmptyTests:
    def test_a_campaign_with_nothing_asked_says_so(self, admin_client, campaign, make_task):
        task(campaign, make_task, status="failed")  # not billed: nothing spent

        html = page(admin_client, campaign)

        assert "Nothing spent yet" in html
        assert '<svg class="imagen-chart"' not in html


class QueryCountTests:
    def test_the_campaign_page_costs_the_same_for_one_task_or_a_thousand(
        self, admin_client, campaign, make_task, django_user_model
    ):
        users = [django_user_model.objects.create_user(f"user{n}") for n in range(3)]
        task(campaign, make_task, cost=Decimal("0.12"), requested_by=users[0])
        counts = []
        with CaptureQueriesContext(connection) as queries:
            page(admin_client, campaign)
        counts.append(len(queries))

        start = at("2026-01-01 09:00")
        GenerationTask.objects.bulk_create(
            GenerationTask(
                campaign=campaign,
                provider=("wave", "wavespeed", "sandbox")[n % 3],
                model="m",
                prompt="p",
                aspect_ratio="1:1",
                num_images=1 + n % 4,
                status=("succeeded", "processing", "failed")[n % 3],
                estimated_cost=Decimal("0.04"),
                cost=Decimal("0.03") if n % 3 == 0 else None,
                requested_by=users[n % 3],
                created_at=start + dt.timedelta(hours=7 * n),
            )
            for n in range(1000)
        )
        with CaptureQueriesContext(connection) as queries:
            html = page(admin_client, campaign)
        counts.append(len(queries))

        assert counts[0] == counts[1], counts
        # 30 days of two bars each (days without tasks draw zero-height bars).
        assert html.count('class="imagen-bar-charged"') == 30


class ChartTests:
    def rows(self, *amounts: tuple[str, str]) -> list[SpendRow]:
        first = dt.date(2026, 4, 1)
        return [
            SpendRow(
                key=first + dt.timedelta(days=n),
                tasks=1,
                estimated=Decimal(est),
                charged=Decimal(chg),
            )
            for n, (est, chg) in enumerate(amounts)
        ]

    @pytest.mark.parametrize(
        ("peak", "top"),
        [
            ("0", "1"),
            ("0.03", "0.05"),
            ("0.16", "0.2"),
            ("2.4", "2.5"),
            ("7", "10"),
            ("10", "10"),
            ("11", "20"),
        ],
    )
    def test_the_top_line_is_a_round_amount_at_least_the_peak(self, peak, top):
        assert nice_ceiling(Decimal(peak)) == Decimal(top)

    def test_bar_heights_are_to_scale_and_a_cent_still_shows(self):
        drawn = chart(self.rows(("0.20", "0.10"), ("0.001", "0")))
        assert drawn is not None
        first, second = drawn["bars"]
        assert first["estimated"]["height"] == "160.0"  # the top line: $0.20
        assert first["charged"]["height"] == "80.0"
        assert second["estimated"]["height"] == "2.0"  # not invisible
        assert second["charged"]["height"] == "0.0"
        assert [line["label"] for line in drawn["grid"]] == ["$0.10", "$0.20"]

    def test_bars_are_placed_in_percent_so_they_fit_any_width(self):
        drawn = chart(self.rows(*[("1", "1")] * 10))
        assert drawn is not None
        ends = [
            float(bar["charged"]["x"].rstrip("%")) + float(bar["charged"]["width"].rstrip("%"))
            for bar in drawn["bars"]
        ]
        assert max(ends) <= 100.0
        assert [label["anchor"] for label in drawn["labels"]] == ["start", "middle", "end"]

    def test_days_are_filled_and_capped(self):
        rows = [
            SpendRow(key=dt.date(2026, 1, 1), tasks=1),
            SpendRow(key=dt.date(2026, 3, 1), tasks=1),
            SpendRow(key=dt.date(2026, 3, 4), tasks=1),
        ]
        days = spending.chart_days(rows, days=30)
        assert days[0].key == dt.date(2026, 2, 3) and days[-1].key == dt.date(2026, 3, 4)
        assert len(days) == 30
        assert [row.key.day for row in days if row.tasks] == [1, 4]
        assert spending.chart_days([], days=30) == []


class SpendCommandTests:
    """``imagen_status --spend SLUG``: the same tables as the campaign page."""

    def run(self, *args: str) -> str:
        out = io.StringIO()
        call_command("imagen_status", *args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    def test_prints_the_totals_and_the_three_tables(
        self, settings, campaign, make_task, django_user_model
    ):
        settings.TIME_ZONE = "Europe/Paris"
        ann = django_user_model.objects.create_user("ann")
        task(
            campaign,
            make_task,
            provider="wave",
            estimated_cost=Decimal("0.17"),
            cost=Decimal("0.1234"),
            requested_by=ann,
            created_at=at("2026-03-09 23:30"),
        )
        task(
            campaign,
            make_task,
            provider="wave",
            status="queued",
            estimated_cost=Decimal("0.17"),
            requested_by=ann,
            created_at=at("2026-03-09 22:30"),
        )

        text = self.run("--spend", campaign.slug)

        lines = text.splitlines()
        assert lines[0] == "Spend of Spring launch (spring-launch); days in Europe/Paris."
        assert lines[1] == "Estimated $0.34, charged $0.12, still running $0.17; 8 image(s)."
        assert re.search(r"^2026-03-09\s+4\s+\$0.17\s+\$0.00\s+\$0.17$", text, re.M)
        assert re.search(r"^2026-03-10\s+4\s+\$0.17\s+\$0.12\s+\$0.00$", text, re.M)
        assert re.search(r"^Wave\s+8\s+\$0.34\s+\$0.12\s+\$0.17$", text, re.M)
        assert re.search(r"^ann\s+8\s+\$0.34\s+\$0.12\s+\$0.17$", text, re.M)
        assert "By day" in text and "By provider" in text and "By person" in text

    def test_json_has_exact_amounts_one_row_per_line(self, campaign, make_task):
        task(
            campaign,
            make_task,
            estimated_cost=Decimal("0.17"),
            cost=Decimal("0.1234"),
            created_at=at("2026-03-09 12:00"),
        )

        rows = [
            json.loads(line) for line in self.run("--spend", campaign.slug, "--json").splitlines()
        ]

        assert [row["table"] for row in rows] == ["day", "provider", "user", "total"]
        assert rows[0]["key"] == "2026-03-09"
        assert rows[-1] | {"table": None} == {
            "table": None,
            "key": None,
            "label": None,
            "tasks": 1,
            "images": 4,
            "estimated": "0.1700",
            "charged": "0.1234",
            "reserved": "0.0000",
            "committed": "0.1234",
        }
        assert rows[2]["key"] is None  # nobody recorded

    def test_an_unknown_campaign_is_an_error(self):
        with pytest.raises(CommandError, match="There is no campaign 'nope'"):
            self.run("--spend", "nope")

    def test_a_campaign_with_nothing_spent_says_so(self, campaign):
        assert "Nothing spent yet" in self.run("--spend", campaign.slug)


class SectionQueryTests:
    def test_the_section_is_four_queries(
        self, campaign, make_task, django_user_model, django_assert_num_queries
    ):
        from imagen_assets.admin.spend import spend_section

        ann = django_user_model.objects.create_user("ann")
        for n in range(5):
            task(campaign, make_task, requested_by=ann, created_at=at(f"2026-03-0{n + 1} 12:00"))
        # The sums by day, by provider and by person, then the people's names.
        with django_assert_num_queries(4):
            spend_section(campaign)
