from django.urls import path

from imagen_assets import files, outside, views

app_name = "imagen_assets"

urlpatterns = [
    path("webhooks/<slug:provider>/", views.webhook, name="webhook"),
    path("webhooks/<slug:provider>/<str:token>/", views.webhook, name="webhook_token"),
    # Image files, permission-checked (imagen_assets.files).
    path("original/<int:image_id>/", files.original, name="original"),
    path("thumbnail/<int:image_id>/", files.thumbnail, name="thumbnail"),
    # Outside reviewers' pages, by signed link (imagen_assets.outside).
    path("review/<str:token>/", outside.review_page, name="outside_review"),
    path(
        "review/<str:token>/thumbnail/<int:image_id>/",
        outside.thumbnail,
        name="outside_thumbnail",
    ),
]
