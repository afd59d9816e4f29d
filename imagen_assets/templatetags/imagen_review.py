"""The admin index's "12 images wait for your review", for the logged-in user.

``{% load imagen_review %}{% review_waiting_notice %}`` in a site's ``admin/index.html``
(the example site's does; the app's own ``admin/imagen_assets/app_index.html`` too). The
count is :func:`imagen_assets.review.waiting_for`, the review screen's own rule.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from imagen_assets import review
from imagen_assets.activity import Actor

register = template.Library()


@register.simple_tag(takes_context=True)
def review_waiting_notice(context: dict[str, Any]) -> SafeString:
    """A notice with the number of images waiting for the user's decision and a link to the
    review screen; nothing for a user who may not review."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm(review.PERM_APPROVE):
        return SafeString("")
    count = review.waiting_for(Actor.of(user)).count()
    html = render_to_string(
        "imagen_assets/admin/includes/review_waiting.html",
        {"count": count, "url": reverse("admin:imagen_assets_generatedimage_review")},
    )
    return mark_safe(html.strip())  # noqa: S308 (autoescaped template output, only stripped)
