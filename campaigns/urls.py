from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    path("imagen/", include("imagen_assets.urls")),
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]
