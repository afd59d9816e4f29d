# ruff: noqa: RUF001  (the data is Chinese, with its full-width punctuation)
"""Every page of the app, rendered in Simplified Chinese (Accept-Language: zh-hans, through
the LocaleMiddleware the example site and the test settings run), shows no string of the
app's catalogue untranslated.

How: every msgid of imagen_assets/locale/zh_Hans/LC_MESSAGES/django.po is looked for in the
text a person reads on the page (text nodes and the attributes a browser shows or the app's
scripts put on screen), placeholders standing for any text. The data is in Chinese too (a
Chinese team's campaign and prompts), so English left on a page is a string of the app or of
Django, not a campaign's words.

A page added to the app's admin must be added here: ``test_every_admin_page_is_covered``
fails on an admin URL name no test renders.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone, translation

from imagen_assets import exports, review, sharing
from imagen_assets.activity import Actor
from imagen_assets.alt_text import MAX_LENGTH as ALT_TEXT_MAX_LENGTH
from imagen_assets.models import (
    Brand,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    PromptTemplate,
    ProviderHealth,
    StylePreset,
    UserQuota,
    WebhookEvent,
)
from tests.po_files import ZH_HANS_PO, Entry, read_po

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
CJK = re.compile(r"[\u4e00-\u9fff]")

# Attributes a person reads (tooltips, alternative text, placeholders, names read out by a
# screen reader); data-* attributes too when they hold a sentence (ShownText).
SHOWN_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label"}

# msgids that may appear on a Chinese page as they are, each for its reason.
MAY_APPEAR: dict[str, str] = {
    # (none yet: a msgid whose translation is the same text, such as "SHA-256", is left out
    # by translated_differently() below.)
}

# Django's own strings its zh_Hans catalogue leaves in English (not the app's to translate):
# taken out of the page's text before looking, so that a msgid such as "name" is not found
# inside them.
DJANGO_UNTRANSLATED: dict[str, str] = {
    "Model name": "Django 5.2 admin's app_list.html, a visually hidden table header",
    "Add link": "Django 5.2 admin's app_list.html, a visually hidden table header",
    "Change or view list link": "Django 5.2 admin's app_list.html, a visually hidden header",
    "Error:": "Django 5.2 admin's change_form.html, the title's prefix when a form has errors",
}

# The example site's own words (templates/admin/base_site.html), not the app's: its name,
# in every page's title and header.
SITE_TEXT: dict[str, str] = {
    "imagen-assets · Campaigns": "the example site's name, a proper name",
}

PLACEHOLDER = re.compile(r"%\(\w+\)[sdgr]|%[sdgr]|\{\w*\}")


class ShownText(HTMLParser):
    """The text of a page as a person reads it: one chunk per text node or shown attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <code>: names for code (a CSV's column names), the same in every language.
        if tag in ("script", "style", "template", "code"):
            self.hidden_depth += 1
        for name, value in attrs:
            if not value or is_json(value):  # data for scripts, e.g. prepopulated fields
                continue
            # data-*: the sentences the app's scripts show (one word is a name for code,
            # such as data-model-name="campaign").
            if name in SHOWN_ATTRIBUTES or (name.startswith("data-") and " " in value.strip()):
                self.chunks.append(value)
            # A button's value is sent, not shown; an input button shows its value.
            if tag == "input" and name == "value" and dict(attrs).get("type") in BUTTONS:
                self.chunks.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template", "code") and self.hidden_depth:
            self.hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        # JSON shown as it is (an image's reproduce block) has keys, not words.
        if not self.hidden_depth and data.strip() and not is_json(data):
            self.chunks.append(data)


BUTTONS = ("submit", "button", "reset")


def is_json(text: str) -> bool:
    text = text.strip()
    if not text.startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def shown_text(html: str) -> str:
    parser = ShownText()
    parser.feed(html)
    # One line per chunk, whitespace collapsed: a sentence of the app is never cut by a
    # tag in the middle except where a msgid carries the tag (see pattern()).
    text = "\n".join(" ".join(chunk.split()) for chunk in parser.chunks)
    for not_the_apps in (*DJANGO_UNTRANSLATED, *SITE_TEXT):
        text = text.replace(not_the_apps, "")
    return text


def line_of(text: str, match: re.Match[str]) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end >= 0 else None]


def translated_differently(entry: Entry) -> bool:
    return any(text != entry.msgid for text in entry.msgstr.values())


def pattern(msgid: str) -> re.Pattern[str] | None:
    """A regex finding ``msgid`` in shown text: each placeholder standing for some text on
    the same line, each tag for where the page's text is cut into chunks (lines: the text
    is tag-free), a first lowercase letter in either case (Django capitalizes a verbose
    name in a heading, a label or a column: "brands" shows as "Brands"); None when the
    msgid has no word of its own to find (e.g. "%(line)s (%(reason)s)")."""
    text = msgid.replace("%%", "%")
    if not re.search(r"[A-Za-z]{2,}", PLACEHOLDER.sub(" ", re.sub(r"<[^>]+>", " ", text))):
        return None
    chunks = []
    for chunk in re.split(r"<[^>]+>", text):
        if not chunk.strip():
            continue
        parts = PLACEHOLDER.split(" ".join(chunk.split()))
        chunks.append(
            r"[^\n]{1,200}?".join(r"\s+".join(map(re.escape, part.split(" "))) for part in parts)
        )
    body = r"\s*".join(chunks)
    first = text[0]
    if first.isascii() and first.islower():
        body = f"[{first}{first.upper()}]" + body[1:]
    # Not part of a longer word, identifier or path ("image/png", "request_body"), nor a
    # template's placeholder ("{name}", kept as it is by a translation: python-brace-format).
    return re.compile(r"(?<![\w/{-])" + body + r"(?![\w/}-])", re.ASCII)


@pytest.fixture(scope="module")
def catalogue() -> list[tuple[str, re.Pattern[str]]]:
    found = []
    for entry in read_po(ZH_HANS_PO):
        if not translated_differently(entry):
            continue
        for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
            if msgid in MAY_APPEAR:
                continue
            compiled = pattern(msgid)
            if compiled is not None:
                found.append((msgid, compiled))
    return found


@pytest.fixture
def untranslated(catalogue: list[tuple[str, re.Pattern[str]]]) -> Callable[[str], list[str]]:
    def check(html: str) -> list[str]:
        text = shown_text(html)
        return [
            f"{msgid!r} in {line_of(text, match)!r}"
            for msgid, compiled in catalogue
            if (match := compiled.search(text))
        ]

    return check


@pytest.fixture
def zh_page(client: Any, untranslated: Callable[[str], list[str]]) -> Callable[..., str]:
    """GET (or POST) ``url`` in Chinese; asserts the page is Chinese and has no app string
    left in English; returns the HTML."""

    def get(url: str, *, data: dict[str, Any] | None = None, status: int = 200) -> str:
        """POST ``data`` when given, following the redirect to the page that reports it."""
        if data is None:
            response = client.get(url, **ZH)
        else:
            response = client.post(url, data, follow=True, **ZH)
        assert response.status_code == status, (url, response.status_code)
        html = response.content.decode()
        assert response.headers.get("Content-Language") == "zh-hans", url
        assert len(CJK.findall(shown_text(html))) >= 10, f"{url}: hardly any Chinese"
        left = untranslated(html)
        assert not left, f"{url}: in English on the Chinese page:\n" + "\n".join(left)
        return html

    return get


@pytest.fixture
def studio(
    admin_user: Any, media: Any, priced: Any, enqueued: Any, make_task: Any, make_image: Any
) -> dict[str, Any]:
    """A Chinese team's campaign in review, with an image of each state, a decision, a
    comment, an export, an outside reviewer's link, a webhook event and a provider alert;
    its brand kit (style presets, a template in its second version), two requests (one
    still being made, over two tasks) and users' daily quotas.

    Made in Chinese, as the team would: what is written down in the language of the moment
    (the History's object names, an export's error) is then Chinese too."""
    with translation.override("zh-hans"):
        return make_studio(admin_user, make_task, make_image)


def make_studio(admin_user: Any, make_task: Any, make_image: Any) -> dict[str, Any]:
    actor = Actor.of(admin_user)
    brand = Brand.objects.create(
        name="青禾生活",
        prompt_prefix="青禾生活的产品照片：",
        prompt_suffix="清新明亮，点缀品牌绿。",
        banned_terms="耐克\n阿迪达斯",
        default_aspect_ratio="4:3",
    )
    StylePreset.objects.create(brand=brand, name="棚拍产品照", prompt="纯白背景，柔光箱布光")
    StylePreset.objects.create(brand=brand, name="户外生活", prompt="午后阳光，浅景深", position=1)
    template = PromptTemplate(brand=brand, name="主打图", text="{产品}摆在{台面}上")
    template.save(changed_by=admin_user)
    template.text = "{产品}摆在{台面}上，旁边有一束鲜花"
    template.save(changed_by=admin_user)  # version 2: the page shows both
    campaign = Campaign.objects.create(
        name="春季新品发布",
        slug="spring-cn",
        brief="为春季新品做社交媒体图片。",
        brand=brand,
        brand_prompt="柔和的粉彩色调，自然光。",
        budget=Decimal("50.00"),
    )
    ask = GenerationRequest.objects.create(
        campaign=campaign, prompt="海边的红色自行车", count=4, requested_by=admin_user
    )
    task = make_task(
        campaign,
        request=ask,
        prompt="海边的红色自行车\n\n柔和的粉彩色调，自然光。",
        num_images=2,
        cost=Decimal("0.08"),
        estimated_cost=Decimal("0.08"),
    )
    approved = make_image(
        campaign, task=task, index=0, with_file=True, alt_text="海边的一辆红色自行车"
    )
    pending = make_image(campaign, task=task, index=1, with_file=True, alt_text="海边的红色自行车")
    for image in (approved, pending):  # the export checks the files against their hashes
        with image.file.open("rb") as file:
            image.sha256 = hashlib.sha256(file.read()).hexdigest()
        image.save(update_fields=["sha256"])
    failed = make_image(campaign, status="failed", error_message="服务方拒绝了提示词")
    withheld = make_image(campaign, status="filtered")
    # Still being made: a request of three images over two tasks, so that the image's page
    # offers to cancel the image, its task or its whole request.
    fog = GenerationRequest.objects.create(
        campaign=campaign, prompt="山间的晨雾", count=3, requested_by=admin_user
    )
    fog_tasks = [
        make_task(
            campaign,
            request=fog,
            prompt="山间的晨雾\n\n柔和的粉彩色调，自然光。",
            status="queued",
            num_images=size,
            estimated_cost=Decimal("0.04") * size,
            requested_by=admin_user,
        )
        for size in (2, 1)
    ]
    queued = make_image(campaign, status="queued", task=fog_tasks[0], index=0)
    make_image(campaign, status="queued", task=fog_tasks[0], index=1)
    make_image(campaign, status="queued", task=fog_tasks[1], index=0)
    review.decide(approved.pk, "approve", actor, note="很好")
    review.comment(pending.pk, actor, "背景再亮一点？")
    export = exports.request_export(campaign.pk, actor)
    exports.build_export(export.pk)
    shared = sharing.share(campaign.pk, actor, "guest@example.com")
    review.submit(campaign.pk, actor)
    event = WebhookEvent.objects.create(
        provider="sandbox",
        event_id="evt-1",
        provider_task_id="pt-1",
        task=task,
        payload={"status": "completed"},
        outcome="图片已保存",
    )
    health = ProviderHealth.objects.create(
        provider="wave",
        state="open",
        failures=3,
        failing_since=timezone.now() - timedelta(minutes=5),
        retry_at=timezone.now() + timedelta(minutes=1),
        last_error="HTTP 503",
        key_refused_at=timezone.now(),
        key_refused_message="HTTP 401",
    )
    # Quotas: a user's own image limit, no limit, a spend limit (the rest the site's).
    users = get_user_model().objects
    quotas = {
        "limited": UserQuota.objects.create(
            user=users.create_user("李娜", password="pw", is_staff=True), images_per_day=20
        ),
        "unlimited": UserQuota.objects.create(
            user=users.create_user("王强", password="pw", is_staff=True), unlimited=True
        ),
        "site": UserQuota.objects.create(user=admin_user, spend_per_day=Decimal("5.00")),
    }
    return {
        "campaign": campaign,
        "brand": brand,
        "template": template,
        "quotas": quotas,
        "request": ask,
        "unfinished_request": fog,
        "task": task,
        "images": {
            "approved": approved,
            "pending": pending,
            "failed": failed,
            "withheld": withheld,
            "queued": queued,
        },
        "export": export,
        "share_url": shared.url,
        "event": event,
        "health": health,
    }


def change(model: str, pk: int) -> str:
    return reverse(f"admin:imagen_assets_{model}_change", args=[pk])


def generate_fields(**fields: Any) -> dict[str, Any]:
    """The generate page's form, as its script posts it for the live prompt preview."""
    return {
        "prompt": "",
        "count": "2",
        "aspect_ratio": "4:3",
        "provider": "sandbox",
        "seed": "",
        "negative_prompt": "",
        "template": "",
        "style": "",
        **fields,
    }


def batch_fields(**fields: Any) -> dict[str, Any]:
    """The "Generate a batch" form, sent for its preview: three prompts, two ratios."""
    return {
        "imagen_batch_preview": "1",
        "prompts": "海边的红色自行车\n雪山下的帐篷\n湖边的露营灯\n",
        "aspect_ratios": ["1:1", "16:9"],
        "count": "2",
        "provider": "wavespeed",
        "seed": "100",
        "negative_prompt": "",
        **fields,
    }


def confirm_fields(preview: str) -> dict[str, list[str]]:
    """What the preview's Generate button posts: the hidden inputs of its form."""
    form = preview[preview.index('class="imagen-batch-confirm"') :]
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        if name != "csrfmiddlewaretoken":
            fields.setdefault(name, []).append(value)
    return fields


@pytest.fixture
def logged_in(client: Any, admin_user: Any, studio: dict[str, Any]) -> dict[str, Any]:
    client.force_login(admin_user)
    return studio


# Every model of the app's admin, by its list.
LISTED = (
    "campaign",
    "brand",
    "prompttemplate",
    "generatedimage",
    "generationrequest",
    "generationtask",
    "webhookevent",
    "providerhealth",
    "userquota",
)

# The management forms of a new brand's inlines (style presets, templates), none filled.
EMPTY_INLINES = {
    f"{prefix}-{field}": value
    for prefix in ("presets", "templates")
    for field, value in (
        ("TOTAL_FORMS", "0"),
        ("INITIAL_FORMS", "0"),
        ("MIN_NUM_FORMS", "0"),
        ("MAX_NUM_FORMS", "1000"),
    )
}


# The admin URL names of the app, and the test that renders each (POST-only ones through
# the page they lead to; the prompt preview, JSON for the generate page's script, through
# the sentences it returns).
COVERED = {
    "imagen_assets_campaign_changelist": "test_lists",
    "imagen_assets_campaign_add": "test_add_pages",
    "imagen_assets_campaign_change": "test_campaign_page",
    "imagen_assets_campaign_history": "test_history_and_delete_pages",
    "imagen_assets_campaign_delete": "test_history_and_delete_pages",
    "imagen_assets_campaign_generate": "test_generate_form",
    "imagen_assets_campaign_summary": "test_campaign_summary_fragment",
    "imagen_assets_campaign_prompt_preview": "test_prompt_preview",
    "imagen_assets_campaign_workflow": "test_workflow_steps",
    "imagen_assets_campaign_generate_batch": "test_generate_batch",
    "imagen_assets_campaign_export": "test_export_request",
    "imagen_assets_campaign_export_download": "test_export_download_of_a_missing_zip",
    "imagen_assets_brand_changelist": "test_lists",
    "imagen_assets_brand_add": "test_add_pages",
    "imagen_assets_brand_change": "test_brand_pages",
    "imagen_assets_brand_history": "test_history_and_delete_pages",
    "imagen_assets_brand_delete": "test_history_and_delete_pages",
    "imagen_assets_prompttemplate_changelist": "test_lists",
    "imagen_assets_prompttemplate_add": "test_add_pages",
    "imagen_assets_prompttemplate_change": "test_brand_pages",
    "imagen_assets_prompttemplate_history": "test_history_and_delete_pages",
    "imagen_assets_prompttemplate_delete": "test_history_and_delete_pages",
    "imagen_assets_generatedimage_changelist": "test_lists",
    "imagen_assets_generatedimage_add": "test_add_pages",
    "imagen_assets_generatedimage_change": "test_image_pages",
    "imagen_assets_generatedimage_history": "test_history_and_delete_pages",
    "imagen_assets_generatedimage_delete": "test_history_and_delete_pages",
    "imagen_assets_generatedimage_review": "test_review_screen",
    "imagen_assets_generatedimage_comment": "test_image_decisions",
    "imagen_assets_generatedimage_revoke": "test_image_decisions",
    "imagen_assets_generatedimage_approve": "test_image_decisions",
    "imagen_assets_generatedimage_reject": "test_image_decisions",
    "imagen_assets_generatedimage_cancel": "test_cancel_pages",
    "imagen_assets_generatedimage_alt_text": "test_alt_text",
    "imagen_assets_generationrequest_changelist": "test_lists",
    "imagen_assets_generationrequest_add": "test_add_pages",
    "imagen_assets_generationrequest_change": "test_support_pages",
    "imagen_assets_generationrequest_history": "test_history_and_delete_pages",
    "imagen_assets_generationrequest_delete": "test_history_and_delete_pages",
    "imagen_assets_generationtask_changelist": "test_lists",
    "imagen_assets_generationtask_add": "test_add_pages",
    "imagen_assets_generationtask_change": "test_support_pages",
    "imagen_assets_generationtask_history": "test_history_and_delete_pages",
    "imagen_assets_generationtask_delete": "test_history_and_delete_pages",
    "imagen_assets_webhookevent_changelist": "test_lists",
    "imagen_assets_webhookevent_add": "test_add_pages",
    "imagen_assets_webhookevent_change": "test_support_pages",
    "imagen_assets_webhookevent_history": "test_history_and_delete_pages",
    "imagen_assets_webhookevent_delete": "test_history_and_delete_pages",
    "imagen_assets_providerhealth_changelist": "test_lists",
    "imagen_assets_providerhealth_add": "test_add_pages",
    "imagen_assets_providerhealth_change": "test_support_pages",
    "imagen_assets_providerhealth_history": "test_history_and_delete_pages",
    "imagen_assets_providerhealth_delete": "test_history_and_delete_pages",
    "imagen_assets_userquota_changelist": "test_lists",
    "imagen_assets_userquota_add": "test_add_pages",
    "imagen_assets_userquota_change": "test_quota_pages",
    "imagen_assets_userquota_history": "test_history_and_delete_pages",
    "imagen_assets_userquota_delete": "test_history_and_delete_pages",
}


def admin_url_names() -> Iterator[str]:
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label == "imagen_assets":
            for url in model_admin.get_urls():
                if url.name:
                    yield url.name


def test_every_admin_page_is_covered() -> None:
    missing = sorted(set(admin_url_names()) - set(COVERED))
    assert missing == [], (
        "admin pages no test renders in Chinese: add each to COVERED and to a test here"
    )
    tests = {name for name in dir(ChinesePagesTests) if name.startswith("test_")}
    assert sorted(set(COVERED.values()) - tests) == [], "COVERED names a test that is not here"
    assert sorted(set(COVERED) - set(admin_url_names())) == [], "COVERED names a gone URL"


class ChinesePagesTests:
    def test_index_pages(self, logged_in: Any, zh_page: Any) -> None:
        html = zh_page(reverse("admin:index"))
        assert "等待你审核" in html  # the review notice of the site's index
        zh_page(reverse("admin:app_list", args=["imagen_assets"]))

    def test_lists(self, logged_in: Any, zh_page: Any) -> None:
        campaign = logged_in["campaign"]
        for model in LISTED:
            zh_page(reverse(f"admin:imagen_assets_{model}_changelist"))
        images = reverse("admin:imagen_assets_generatedimage_changelist")
        # Filtered, as the campaign page's links and the filters leave it; and as a grid.
        for query in (
            f"?campaign__id__exact={campaign.pk}",
            "?status__exact=failed",
            "?status__exact=filtered",
            "?review_status__exact=pending",
            "?q=自行车",
            "?view=grid",
            "?view=grid&q=没有这样的图片",
            f"?task__request={logged_in['unfinished_request'].pk}",
        ):
            zh_page(images + query)
        requests = reverse("admin:imagen_assets_generationrequest_changelist")
        zh_page(requests + "?q=晨雾")
        templates = reverse("admin:imagen_assets_prompttemplate_changelist")
        zh_page(templates + f"?brand__id__exact={logged_in['brand'].pk}")
        zh_page(reverse("admin:imagen_assets_userquota_changelist") + "?unlimited__exact=1")

    def test_campaign_page(self, logged_in: Any, zh_page: Any) -> None:
        html = zh_page(change("campaign", logged_in["campaign"].pk))
        assert "春季新品发布" in html

    def test_add_pages(self, logged_in: Any, zh_page: Any, client: Any) -> None:
        # Campaigns, brands, templates and quotas are added by hand; the other rows are
        # made by the app.
        for model in ("campaign", "brand", "prompttemplate", "userquota"):
            zh_page(reverse(f"admin:imagen_assets_{model}_add"))
        for model in (
            "generatedimage",
            "generationrequest",
            "generationtask",
            "webhookevent",
            "providerhealth",
        ):
            url = reverse(f"admin:imagen_assets_{model}_add")
            assert client.get(url, **ZH).status_code == 403, model
        # Refused, each with its errors.
        zh_page(
            reverse("admin:imagen_assets_campaign_add"),
            data={"name": "", "slug": ""},
        )
        zh_page(
            reverse("admin:imagen_assets_brand_add"),
            data={
                **EMPTY_INLINES,
                "name": "山野咖啡",
                "prompt_prefix": "耐克风格的海报：",  # holds its own banned term
                "banned_terms": "耐克",
            },
        )
        zh_page(
            reverse("admin:imagen_assets_prompttemplate_add"),
            data={"brand": logged_in["brand"].pk, "name": "错误模板", "text": "{产品 摆在桌上"},
        )
        zh_page(
            reverse("admin:imagen_assets_userquota_add"),
            data={"user": "", "images_per_day": "-1", "spend_per_day": "-5"},
        )

    def test_history_and_delete_pages(self, logged_in: Any, zh_page: Any, client: Any) -> None:
        objects = {
            "campaign": logged_in["campaign"].pk,
            "brand": logged_in["brand"].pk,
            "prompttemplate": logged_in["template"].pk,
            "generatedimage": logged_in["images"]["approved"].pk,
            "generationrequest": logged_in["request"].pk,
            "generationtask": logged_in["task"].pk,
            "webhookevent": logged_in["event"].pk,
            "providerhealth": logged_in["health"].pk,
            "userquota": logged_in["quotas"]["limited"].pk,
        }
        for model, pk in objects.items():
            zh_page(reverse(f"admin:imagen_assets_{model}_history", args=[pk]))
            delete = reverse(f"admin:imagen_assets_{model}_delete", args=[pk])
            if client.get(delete, **ZH).status_code != 403:  # the app may forbid deleting
                zh_page(delete)

    def test_generate_form(self, logged_in: Any, zh_page: Any) -> None:
        campaign = logged_in["campaign"]
        # A campaign in review takes no new images: back to a draft first.
        Campaign.objects.filter(pk=campaign.pk).update(status="draft")
        url = reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk])
        html = zh_page(url)
        assert "提示词" in html
        # Refused: no prompt, a negative prompt the provider does not take.
        zh_page(
            url,
            data={"imagen_generate": "1", "prompt": "", "count": "99", "provider": "sandbox"},
        )
        # From the list's action, for two campaigns.
        other = Campaign.objects.create(name="夏季促销", slug="summer-cn")
        zh_page(
            reverse("admin:imagen_assets_campaign_changelist"),
            data={"action": "generate_images", "_selected_action": [campaign.pk, other.pk]},
        )
        # Sent: the campaign's page with the message of what was queued.
        html = zh_page(
            url,
            data={
                "imagen_generate": "1",
                "prompt": "雪山下的帐篷",
                "count": "2",
                "aspect_ratio": "1:1",
                "provider": "sandbox",
            },
        )
        assert "雪山下的帐篷" in html or "已为" in html

    def test_review_screen(self, logged_in: Any, zh_page: Any) -> None:
        url = reverse("admin:imagen_assets_generatedimage_review")
        html = zh_page(url)
        assert "键盘快捷键" in html
        zh_page(url + f"?campaign={logged_in['campaign'].pk}")

    def test_image_pages(self, logged_in: Any, zh_page: Any) -> None:
        for name, image in logged_in["images"].items():
            html = zh_page(change("generatedimage", image.pk))
            assert html, name

    def test_image_decisions(self, logged_in: Any, zh_page: Any, staff_user: Any) -> None:
        pending = logged_in["images"]["pending"]
        approved = logged_in["images"]["approved"]
        page = change("generatedimage", pending.pk)
        zh_page(
            reverse("admin:imagen_assets_generatedimage_comment", args=[pending.pk]),
            data={"note": "再试一次"},
        )
        zh_page(
            reverse("admin:imagen_assets_generatedimage_reject", args=[pending.pk]),
            data={"note": ""},
        )
        zh_page(
            reverse("admin:imagen_assets_generatedimage_revoke", args=[approved.pk]),
            data={"note": "品牌色不对"},
        )
        zh_page(
            reverse("admin:imagen_assets_generatedimage_approve", args=[approved.pk]),
            data={"note": ""},
        )
        zh_page(page)
        # The list's actions: the reject form, and a refusal for the images not ready.
        images = reverse("admin:imagen_assets_generatedimage_changelist")
        every = [image.pk for image in logged_in["images"].values()]
        zh_page(images, data={"action": "reject_selected", "_selected_action": every})
        zh_page(
            images,
            data={
                "action": "reject_selected",
                "_selected_action": every,
                "imagen_reject": "1",
                "note": "",
            },
        )
        zh_page(images, data={"action": "approve_selected", "_selected_action": every})

    def test_workflow_steps(self, logged_in: Any, zh_page: Any) -> None:
        campaign = logged_in["campaign"]
        url = reverse("admin:imagen_assets_campaign_workflow", args=[campaign.pk])
        for step, note in (
            ("sign_off", ""),  # refused: an image still waits for review
            ("request_changes", ""),  # refused: the note is required
            ("request_changes", "换成夏季色调"),
            ("unknown", ""),
            ("archive", ""),
            ("reopen", ""),
        ):
            html = zh_page(url, data={"step": step, "note": note})
            assert "messagelist" in html, step

    def test_export_request(self, logged_in: Any, zh_page: Any) -> None:
        campaign = logged_in["campaign"]
        html = zh_page(reverse("admin:imagen_assets_campaign_export", args=[campaign.pk]), data={})
        assert "messagelist" in html

    def test_export_download_of_a_missing_zip(self, logged_in: Any, client: Any) -> None:
        campaign = logged_in["campaign"]
        response = client.get(
            reverse("admin:imagen_assets_campaign_export_download", args=[campaign.pk, 999999]),
            **ZH,
        )
        assert response.status_code == 404

    def test_campaign_summary_fragment(self, logged_in: Any, zh_page: Any) -> None:
        # The summary alone, as the campaign page's script asks for it while images are
        # being made (a request is unfinished).
        campaign = logged_in["campaign"]
        html = zh_page(reverse("admin:imagen_assets_campaign_summary", args=[campaign.pk]))
        assert "data-imagen-summary-open" in html

    def test_prompt_preview(self, logged_in: Any, client: Any, untranslated: Any) -> None:
        """JSON for the generate page's script, which shows each campaign's final prompt or
        why it would be refused: those sentences must be Chinese."""
        campaign = logged_in["campaign"]
        template = logged_in["template"]
        preset = StylePreset.objects.get(name="棚拍产品照")
        filled = {"template": template.pk, "placeholder__产品": "陶瓷杯"}
        answers = []
        for fields in (
            {"prompt": "雪山下的帐篷", "style": preset.pk},
            {"prompt": "穿耐克鞋的跑者"},  # a term the brand bans
            filled,  # a blank of the template left empty
            {**filled, "placeholder__台面": "木桌"},
        ):
            response = client.post(
                reverse("admin:imagen_assets_campaign_prompt_preview"),
                {**generate_fields(**fields), "preview_campaign": [campaign.pk]},
                **ZH,
            )
            assert response.status_code == 200
            assert response.headers.get("Content-Language") == "zh-hans"
            [answer] = response.json()["previews"]
            answers.append(answer)
        assert [bool(answer["error"]) for answer in answers] == [False, True, True, False]
        assert "陶瓷杯摆在木桌上" in answers[-1]["prompt"]
        shown = "\n".join(
            answer[key] for answer in answers for key in ("name", "prompt", "error") if answer[key]
        )
        assert len(CJK.findall(shown)) >= 10
        left = untranslated(shown)
        assert not left, "in English in the prompt preview:\n" + "\n".join(left)

    def test_generate_batch(self, logged_in: Any, zh_page: Any, settings: Any) -> None:
        campaign = logged_in["campaign"]
        url = reverse("admin:imagen_assets_campaign_generate_batch", args=[campaign.pk])
        zh_page(url)
        # Refused, the form saying what is wrong: no ratio, a banned term on a line, a
        # CSV's bad lines, both a text and a file, a file without prompts.
        zh_page(url, data=batch_fields(aspect_ratios=[]))
        zh_page(url, data=batch_fields(prompts="海边的红色自行车\n穿耐克鞋的跑者\n"))
        csv = "prompt,aspect_ratio,count\n草地上的野餐,1:1,1\n沙漠里的越野车,2:1,1\n,1:1,1\n"
        zh_page(
            url,
            data=batch_fields(prompts="", csv_file=SimpleUploadedFile("批量.csv", csv.encode())),
        )
        zh_page(url, data=batch_fields(csv_file=SimpleUploadedFile("批量.csv", csv.encode())))
        for empty in (b"\n", b"prompt\n"):  # no header; a header and no prompt
            zh_page(
                url, data=batch_fields(prompts="", csv_file=SimpleUploadedFile("空.csv", empty))
            )
        # The preview: the matrix, its price and the budget left.
        preview = zh_page(url, data=batch_fields())
        assert "湖边的露营灯" in preview
        confirm = {**confirm_fields(preview), "imagen_batch_confirm": "1"}
        # "Change the batch": the form again, with its values.
        zh_page(url, data={**confirm_fields(preview), "imagen_batch_edit": "1"})
        # Refused: an altered preview; a price changed since; the budget gone meanwhile.
        zh_page(url, data={**confirm, "batch": [confirm["batch"][0][:-2] + "xx"]})
        config = settings.IMAGEN_ASSETS
        settings.IMAGEN_ASSETS = {
            **config,
            "PROVIDERS": {
                **config["PROVIDERS"],
                "wavespeed": {
                    **config["PROVIDERS"]["wavespeed"],
                    "OPTIONS": {"API_KEY": "k", "PRICE_PER_IMAGE": "0.05"},
                },
            },
        }
        zh_page(url, data=confirm)
        settings.IMAGEN_ASSETS = config
        Campaign.objects.filter(pk=campaign.pk).update(budget=Decimal("0.10"))
        zh_page(url, data=confirm)
        zh_page(url, data=batch_fields())  # the preview says why, and offers no Generate
        Campaign.objects.filter(pk=campaign.pk).update(budget=Decimal("50.00"))
        # Confirmed: the images list, saying what was queued.
        html = zh_page(url, data=confirm)
        assert "messagelist" in html
        assert GenerationRequest.objects.filter(origin="batch").count() == 1

    def test_generate_again(self, logged_in: Any, zh_page: Any) -> None:
        # The generate page opened from an image's "Generate again" links, prefilled.
        failed = logged_in["images"]["failed"]
        html = zh_page(change("generatedimage", failed.pk))
        url = reverse("admin:imagen_assets_campaign_generate", args=[failed.campaign_id])
        assert f"again={failed.pk}" in html
        for mode in ("retry", "more", "other"):
            zh_page(f"{url}?again={failed.pk}&mode={mode}")
        zh_page(f"{url}?again={failed.pk}&mode=other&provider=wavespeed")

    def test_brand_pages(self, logged_in: Any, zh_page: Any) -> None:
        html = zh_page(change("brand", logged_in["brand"].pk))
        assert "棚拍产品照" in html
        template = logged_in["template"]
        url = change("prompttemplate", template.pk)
        html = zh_page(url)
        assert "旁边有一束鲜花" in html  # the history: version 2 above version 1
        fields = {"brand": logged_in["brand"].pk, "name": "主打图"}
        zh_page(url, data={**fields, "text": "{产品}摆在{台面}上，清晨的光线"})
        zh_page(url, data={**fields, "text": "{产品 摆在{台面}上"})  # refused: a lone brace

    def test_quota_pages(self, logged_in: Any, zh_page: Any, settings: Any) -> None:
        quotas = logged_in["quotas"]
        for quota in quotas.values():
            zh_page(change("userquota", quota.pk))
        # The site's defaults set: the list and the pages say which applies.
        settings.IMAGEN_ASSETS = {
            **settings.IMAGEN_ASSETS,
            "USER_DAILY_IMAGES": 50,
            "USER_DAILY_SPEND": "10.00",
        }
        zh_page(reverse("admin:imagen_assets_userquota_changelist"))
        for quota in quotas.values():
            zh_page(change("userquota", quota.pk))
        # The generate page's refusal when a request goes over the user's quota.
        UserQuota.objects.filter(pk=quotas["site"].pk).update(images_per_day=1)
        campaign = logged_in["campaign"]
        zh_page(
            reverse("admin:imagen_assets_campaign_generate", args=[campaign.pk]),
            data={"imagen_generate": "1", **generate_fields(prompt="湖边的露营灯")},
        )

    def test_cancel_pages(self, logged_in: Any, zh_page: Any) -> None:
        queued = logged_in["images"]["queued"]
        html = zh_page(change("generatedimage", queued.pk))  # offers the three cancels
        url = reverse("admin:imagen_assets_generatedimage_cancel", args=[queued.pk])
        assert f"{url}?scope=request" in html
        for scope in ("image", "task", "request"):
            zh_page(f"{url}?scope={scope}")
        # Done: the image's page says what was cancelled.
        html = zh_page(url, data={"scope": "task"})
        assert "messagelist" in html
        # Refused: nothing of it unfinished any more; an image that is ready.
        zh_page(url, data={"scope": "task"})
        approved = logged_in["images"]["approved"]
        cancel_approved = reverse("admin:imagen_assets_generatedimage_cancel", args=[approved.pk])
        zh_page(cancel_approved, data={"scope": "image"})

    def test_alt_text(self, logged_in: Any, zh_page: Any) -> None:
        image = logged_in["images"]["approved"]
        url = reverse("admin:imagen_assets_generatedimage_alt_text", args=[image.pk])
        html = zh_page(url, data={"alt_text": "海边停着一辆红色自行车，阳光柔和"})
        assert "海边停着一辆红色自行车" in html
        # Refused: empty; too long.
        zh_page(url, data={"alt_text": "  "})
        zh_page(url, data={"alt_text": "长" * (ALT_TEXT_MAX_LENGTH + 1)})

    def test_support_pages(self, logged_in: Any, zh_page: Any) -> None:
        zh_page(change("generationrequest", logged_in["request"].pk))
        zh_page(change("generationrequest", logged_in["unfinished_request"].pk))
        zh_page(change("generationtask", logged_in["task"].pk))
        zh_page(change("webhookevent", logged_in["event"].pk))
        zh_page(change("providerhealth", logged_in["health"].pk))


class OutsidePagesTests:
    def test_outside_review_page(self, studio: dict[str, Any], client: Any, zh_page: Any) -> None:
        url = studio["share_url"]
        html = zh_page(url)
        assert "guest@example.com" in html
        pending = studio["images"]["pending"]
        zh_page(url, data={"image": pending.pk, "action": "comment", "note": "很好看"})
        # Refused (a rejection needs its reason): the page again, with the error.
        zh_page(url, data={"image": pending.pk, "action": "reject", "note": ""}, status=400)

    def test_refusals(self, studio: dict[str, Any], client: Any, zh_page: Any) -> None:
        zh_page(reverse("imagen_assets:outside_review", args=["not-a-token"]), status=404)


@pytest.mark.parametrize(
    "msgid, text, found",
    [
        ("Approve", "批准\nApprove", True),
        ("Approve", "Approved", False),
        ("%(spent)s of %(budget)s", "$1.00 of $5.00", True),
        ("%(spent)s of %(budget)s", "$1.00 / $5.00", False),
        ("<strong>%(committed)s</strong> committed", "$3.00 committed", True),
        ("Generating %(progress)d%%", "Generating 40%", True),
        ("brands", "首页\n› Brands", True),  # a verbose name, capitalized by Django
        ("brands", "Brandsville", False),
        ("Approve", "approve", False),
        (
            'Carried over from <a href="%(url)s">image #%(id)s</a>; change anything below.',
            "Carried over from\nimage #3\n; change anything below.",
            True,
        ),
        ("<strong>%(committed)s</strong> committed", "$3.00\ncommitted", True),
        ("placeholders", "带 {placeholders} 的提示词", False),
    ],
)
def test_the_search_finds_a_msgid_and_only_it(msgid: str, text: str, found: bool) -> None:
    compiled = pattern(msgid)
    assert compiled is not None
    assert bool(compiled.search(text)) is found


def test_images_of_every_state_exist(studio: dict[str, Any]) -> None:
    states = set(GeneratedImage.objects.values_list("status", flat=True))
    assert {"succeeded", "failed", "filtered", "queued"} <= states


def test_the_header_switches_the_language(admin_client: Any) -> None:
    """The example site's switcher (set_language, a cookie) takes the page the user was on
    into the other language, filters kept."""
    images = reverse("admin:imagen_assets_generatedimage_changelist") + "?status__exact=failed"
    html = admin_client.get(images).content.decode()
    assert 'name="language" value="zh-hans"' in html  # the other language, offered
    response = admin_client.post(
        reverse("set_language"), {"language": "zh-hans", "next": images}, follow=True
    )
    assert response.redirect_chain[-1][0] == images
    assert response.headers["Content-Language"] == "zh-hans"
    assert 'name="language" value="en"' in response.content.decode()
