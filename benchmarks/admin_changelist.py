"""The admin's pages with 100 000 images: queries and time per page.

In-process, on a temporary SQLite file: 200 campaigns, 25 000 tasks of 4 images each (two
tasks per request), in the mix of states a busy site has. A superuser then opens through
``django.test.Client`` the GeneratedImage changelist (first page, filtered by status, by
campaign, by request, the grid), the Campaign changelist, and the studio's pages: a
campaign's page (summary, recent requests, spend chart), its summary fragment, the generate
and batch pages, an image's page, the requests list, a brand, the review screen. Prints
per page the query count, the median time of the requests and its ratio to the bound
(500 ms), and checks the query count does not grow with the page size. For a page over its
bound it prints the slowest query's EXPLAIN QUERY PLAN (``--explain``: for every page).

The Campaign changelist is the slow one: its with_stats() annotations are correlated
subqueries that count the images of each campaign, and with no index on
Campaign.created_at SQLite evaluates them for every campaign before sorting, so its cost
grows with the total number of images, not with the page.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

CAMPAIGN_PAGE = "/admin/imagen_assets/campaign/"
IMAGE_PAGE = "/admin/imagen_assets/generatedimage/"
REQUEST_PAGE = "/admin/imagen_assets/generationrequest/"


def setup_django(database: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "campaigns.settings"
    os.environ["DEBUG"] = "0"  # as deployed: no template debug information
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["IMAGEN_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def populate(campaigns: int, tasks: int, per_task: int) -> float:
    """Create the rows with bulk_create; returns the seconds it took."""
    from django.db import transaction
    from django.utils import timezone

    from imagen_assets.models import (
        Brand,
        Campaign,
        GeneratedImage,
        GenerationRequest,
        GenerationTask,
        PromptTemplate,
        StylePreset,
    )

    started = time.monotonic()
    now = timezone.now()
    # One task every 10 s going back in time, its images a moment later.
    task_states = [
        # (task status, image statuses by index) in proportion: mostly finished
        *[("succeeded", ["succeeded"] * per_task)] * 14,
        ("succeeded", ["succeeded", "filtered", *["succeeded"] * (per_task - 2)]),
        ("failed", ["failed"] * per_task),
        ("processing", ["processing"] * per_task),
        ("queued", ["queued"] * per_task),
    ]
    reviews = ["pending", "approved", "approved", "rejected"]
    with transaction.atomic():
        brand = Brand.objects.create(
            name="Meadow", prompt_prefix="Photograph for Meadow.", banned_terms="Nike"
        )
        StylePreset.objects.create(brand=brand, name="Studio", prompt="studio light")
        PromptTemplate(brand=brand, name="Hero", text="A {product} outdoors").save()
        Campaign.objects.bulk_create(
            Campaign(
                name=f"Campaign {i:03d}",
                slug=f"campaign-{i:03d}",
                brief="Benchmark campaign",
                budget=Decimal(500) if i % 2 else None,
                brand=brand,
            )
            for i in range(campaigns)
        )
        campaign_ids = list(Campaign.objects.order_by("pk").values_list("pk", flat=True))
        # One request per two tasks of a campaign (tasks i and i + campaigns).
        requests = GenerationRequest.objects.bulk_create(
            GenerationRequest(
                campaign_id=campaign_ids[i % campaigns],
                prompt=f"A product photo, variation {i}",
                count=2 * per_task,
                created_at=now - timedelta(seconds=10 * i),
            )
            for i in range((tasks + 1) // 2)
        )
        request_of = {
            i: requests[(i % campaigns) + (i // (2 * campaigns)) * campaigns].pk
            for i in range(tasks)
            if (i % campaigns) + (i // (2 * campaigns)) * campaigns < len(requests)
        }
        batch = 5000
        for start in range(0, tasks, batch):
            chunk = range(start, min(start + batch, tasks))
            new_tasks = []
            for i in chunk:
                status = task_states[i % len(task_states)][0]
                new_tasks.append(
                    GenerationTask(
                        campaign_id=campaign_ids[i % campaigns],
                        request_id=request_of.get(i),
                        written_prompt=f"A product photo, variation {i}",
                        provider=("sandbox", "wave", "wavespeed")[i % 3],
                        model="imagen-4",
                        prompt=f"A product photo, variation {i}",
                        aspect_ratio="16:9",
                        num_images=per_task,
                        provider_task_id=f"bench-{i}",
                        status=status,
                        progress=40 if status == "processing" else 0,
                        error_message="Refused by the provider" if status == "failed" else "",
                        estimated_cost=Decimal("0.1600"),
                        cost=Decimal("0.1600") if status == "succeeded" else None,
                        created_at=now - timedelta(seconds=10 * i),
                        callback_token=f"bench-token-{i}",
                    )
                )
            created = GenerationTask.objects.bulk_create(new_tasks)
            images = []
            for i, task in zip(chunk, created, strict=True):
                statuses = task_states[i % len(task_states)][1]
                for index in range(per_task):
                    status = statuses[index]
                    done = status == "succeeded"
                    name = f"imagen/campaign-{i % campaigns:03d}/{i}-{index}.jpeg"
                    images.append(
                        GeneratedImage(
                            task_id=task.pk,
                            campaign_id=task.campaign_id,
                            index=index,
                            status=status,
                            file=name if done else "",
                            thumbnail=name.replace(".jpeg", "-thumb.jpeg") if done else "",
                            width=1408 if done else None,
                            height=768 if done else None,
                            bytes=412_000 if done else None,
                            content_type="image/jpeg" if done else "",
                            review_status=reviews[(i + index) % 4] if done else "none",
                            alt_text=f"A product photo, variation {i}",
                            created_at=now - timedelta(seconds=10 * i - index),
                        )
                    )
            GeneratedImage.objects.bulk_create(images)
    return time.monotonic() - started


def measure(client: Any, url: str, runs: int) -> tuple[int, float, list[dict[str, str]]]:
    """(queries, median ms, captured queries of the last run) of GET ``url``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up: templates, URL resolvers, first-use imports
    if response.status_code != 200:
        raise SystemExit(f"GET {url}: {response.status_code}")
    times, counts = [], set()
    captured: list[dict[str, str]] = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as context:
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code}")
        counts.add(len(context.captured_queries))
        captured = context.captured_queries
    if len(counts) != 1:
        raise SystemExit(f"GET {url}: the query count changed between runs: {sorted(counts)}")
    return counts.pop(), statistics.median(times) * 1000, captured


def slowest_query(captured: list[dict[str, str]]) -> tuple[float, str]:
    """The slowest SELECT of a page, re-run with every row fetched, and its ms.

    The times CaptureQueriesContext records cover ``execute()`` only; on SQLite a plan that
    streams its rows does most of its work while they are fetched, so it is timed again here.
    """
    from django.db import connection

    slowest = (0.0, "")
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            started = time.perf_counter()
            cursor.execute(sql)
            cursor.fetchall()
            slowest = max(slowest, ((time.perf_counter() - started) * 1000, sql))
    return slowest


def describe(sql: str) -> str:
    """``count imagen_assets_campaign`` or ``select imagen_assets_generatedimage``: what the
    outermost SELECT reads (subqueries in its column list are skipped)."""
    depth = 0
    for position, char in enumerate(sql):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and sql.startswith(' FROM "', position):
            table = re.match(r' FROM "(\w+)"', sql[position:])
            head = sql[:position]
            kind = "count" if head.startswith("SELECT COUNT(") else "select"
            return f"{kind} {table.group(1) if table else '?'}"
    return "?"


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "; ".join(str(row[-1]) for row in cursor.fetchall())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=25_000)
    parser.add_argument("--images-per-task", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bound-ms", type=float, default=500.0)
    parser.add_argument("--explain", action="store_true", help="explain every slowest query")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagen-bench-") as work:
        return run(args, Path(work) / "db.sqlite3")


def run(args: argparse.Namespace, database: Path) -> int:
    setup_django(database)
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from imagen_assets.models import Brand, Campaign, GeneratedImage, GenerationRequest

    call_command("migrate", verbosity=0)
    seconds = populate(args.campaigns, args.tasks, args.images_per_task)
    total = GeneratedImage.objects.count()
    campaign = Campaign.objects.order_by("pk")[args.campaigns // 2]
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    print(
        f"admin changelist data: {total} images, {args.campaigns} campaigns, {args.tasks} "
        f"tasks on SQLite, created with bulk_create in {seconds:.1f} s"
    )

    one_campaign = f"{IMAGE_PAGE}?campaign__id__exact={campaign.pk}"
    request = GenerationRequest.objects.filter(campaign=campaign).order_by("-pk").first()
    image = GeneratedImage.objects.filter(campaign=campaign, status="succeeded").first()
    brand = Brand.objects.get()
    assert request is not None and image is not None
    # Pending review needs a campaign in review, the review screen a reviewable image.
    Campaign.objects.filter(pk=campaign.pk).update(status="in_review")
    pages = [
        (GeneratedImage, "first page", IMAGE_PAGE),
        (GeneratedImage, "status=succeeded", f"{IMAGE_PAGE}?status__exact=succeeded"),
        (GeneratedImage, "one campaign", one_campaign),
        (GeneratedImage, "one campaign, approved", f"{one_campaign}&review_status__exact=approved"),
        (GeneratedImage, "provider=wave", f"{IMAGE_PAGE}?task__provider=wave"),
        (GeneratedImage, "grid", f"{IMAGE_PAGE}?view=grid"),
        (GeneratedImage, "one request, grid", f"{IMAGE_PAGE}?task__request={request.pk}&view=grid"),
        (Campaign, "first page", CAMPAIGN_PAGE),
        (GenerationRequest, "first page", REQUEST_PAGE),
        (Campaign, "a campaign's page", f"{CAMPAIGN_PAGE}{campaign.pk}/change/"),
        (Campaign, "its summary fragment", f"{CAMPAIGN_PAGE}{campaign.pk}/summary/"),
        (Campaign, "generate page", f"{CAMPAIGN_PAGE}{campaign.pk}/generate/"),
        (Campaign, "batch page", f"{CAMPAIGN_PAGE}{campaign.pk}/generate-batch/"),
        (GeneratedImage, "an image's page", f"{IMAGE_PAGE}{image.pk}/change/"),
        (GeneratedImage, "review screen", f"{IMAGE_PAGE}review/"),
        (Brand, "a brand's page", f"/admin/imagen_assets/brand/{brand.pk}/change/"),
    ]
    for model, label, url in pages:
        queries, median, captured = measure(client, url, args.runs)
        query_ms, sql = slowest_query(captured)
        over = median > args.bound_ms
        listing = url.split("?")[0] in (IMAGE_PAGE, CAMPAIGN_PAGE, REQUEST_PAGE)
        rows = f", {admin.site._registry[model].list_per_page} rows/page" if listing else ""
        print(
            f"admin {model.__name__}, {label} ({total} images{rows}): {queries} queries, "
            f"median of {args.runs} {median:.1f} ms (slowest query {query_ms:.1f} ms, "
            f"{describe(sql)}); bound {args.bound_ms:g} ms; ratio {median / args.bound_ms:.2f}"
            f"{'; OVER THE BOUND' if over else ''}"
        )
        if over or args.explain:
            print(f"  plan of the slowest query: {explain(sql)}")

    # The query count must not depend on how many rows a page shows.
    sizes = (10, 100, 200)
    found = []
    constant = True
    for model, url in ((GeneratedImage, IMAGE_PAGE), (Campaign, CAMPAIGN_PAGE)):
        counts = []
        for per_page in sizes:
            with mock.patch.object(admin.site._registry[model], "list_per_page", per_page):
                counts.append(measure(client, url, 1)[0])
        constant = constant and len(set(counts)) == 1
        found.append(f"{model.__name__} {'/'.join(map(str, counts))}")
    print(
        f"admin changelist queries at {'/'.join(map(str, sizes))} rows per page: "
        f"{', '.join(found)}; {'constant' if constant else 'GROWS WITH THE PAGE SIZE'}"
    )
    return 0 if constant else 1


if __name__ == "__main__":
    sys.exit(main())
