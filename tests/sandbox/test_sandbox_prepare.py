"""The sandbox renders a task's images while the task runs, as a provider generates them:
the download is then served from its cache (imagen_assets.sandbox.images.ImageStore)."""

from __future__ import annotations

from imagen_assets.sandbox import images
from imagen_assets.sandbox.images import ImageSpec, ImageStore


def spec(seed: int) -> ImageSpec:
    return ImageSpec("wavespeed-ai/imagen4", "1:1", 64, 64, seed, "kites", 0)


def test_a_prepared_image_is_served_without_rendering_again(monkeypatch):
    store = ImageStore()
    name = store.register(spec(1))
    store.prepare([spec(1)])
    expected = images.render_image(spec(1))

    def no_render(_spec: ImageSpec) -> bytes:
        raise AssertionError("rendered at download time")

    monkeypatch.setattr(images, "render_image", no_render)
    served = store.content(name)

    assert served is not None and served[0] == expected


def test_an_image_not_prepared_is_rendered_on_download(monkeypatch):
    store = ImageStore()
    name = store.register(spec(2))
    rendered = []
    real = images.render_image
    monkeypatch.setattr(images, "render_image", lambda s: rendered.append(s) or real(s))

    assert store.content(name) is not None
    assert rendered == [spec(2)]
