from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static as static_url
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import set_language

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Browsers ask for /favicon.ico on every page; the app ships one.
    path(
        "favicon.ico",
        login_not_required(
            RedirectView.as_view(url=static_url("imagen_assets/favicon.svg"), permanent=True)
        ),
    ),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    # The admin header's language switcher (English / 简体中文): a cookie, so also before a login.
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("imagen/", include("imagen_assets.urls")),
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]
