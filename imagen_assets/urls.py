from django.urls import path

from imagen_assets import views

app_name = "imagen_assets"

urlpatterns = [
    path("webhooks/<slug:provider>/", views.webhook, name="webhook"),
    path("webhooks/<slug:provider>/<str:token>/", views.webhook, name="webhook_token"),
]
