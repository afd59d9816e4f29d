"""The admin: a thin layer over :mod:`imagen_assets.services`.

Actions and buttons call services and report with ``message_user``; nothing here talks to a
provider. Asking for images (which costs money) goes through a page that shows the price
first. Every changelist runs a fixed number of queries whatever the number of rows.

Where things are: :mod:`.campaigns` (campaigns and the generate page), :mod:`.images`
(generated images and their review), :mod:`.brands` (brand kits, style presets, prompt
templates and their versions), :mod:`.support` (tasks, webhook events and providers'
health, read-only), :mod:`.base` (what they share and the providers' warnings). How things
look is :mod:`imagen_assets.templatetags.imagen_admin`.
"""

from __future__ import annotations

from django.contrib import admin

from imagen_assets.admin.brands import BrandAdmin, PromptTemplateAdmin
from imagen_assets.admin.campaigns import CampaignAdmin
from imagen_assets.admin.images import GeneratedImageAdmin
from imagen_assets.admin.quotas import UserQuotaAdmin
from imagen_assets.admin.support import (
    GenerationRequestAdmin,
    GenerationTaskAdmin,
    ProviderHealthAdmin,
    WebhookEventAdmin,
)
from imagen_assets.models import (
    Brand,
    Campaign,
    GeneratedImage,
    GenerationRequest,
    GenerationTask,
    PromptTemplate,
    ProviderHealth,
    UserQuota,
    WebhookEvent,
)

__all__ = [
    "BrandAdmin",
    "CampaignAdmin",
    "GeneratedImageAdmin",
    "GenerationRequestAdmin",
    "GenerationTaskAdmin",
    "PromptTemplateAdmin",
    "ProviderHealthAdmin",
    "UserQuotaAdmin",
    "WebhookEventAdmin",
]

admin.site.register(Campaign, CampaignAdmin)
admin.site.register(Brand, BrandAdmin)
admin.site.register(PromptTemplate, PromptTemplateAdmin)
admin.site.register(GeneratedImage, GeneratedImageAdmin)
admin.site.register(GenerationRequest, GenerationRequestAdmin)
admin.site.register(GenerationTask, GenerationTaskAdmin)
admin.site.register(WebhookEvent, WebhookEventAdmin)
admin.site.register(ProviderHealth, ProviderHealthAdmin)
admin.site.register(UserQuota, UserQuotaAdmin)
