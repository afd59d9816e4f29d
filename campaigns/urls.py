from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static as static_url
from django.urls import include, path
from django.views.generic import RedirectView

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
    path("imagen/", include("imagen_assets.urls")),
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]
