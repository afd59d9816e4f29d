"""imagen-assets: campaign images from hosted Imagen 4 APIs, generated, stored and approved in Django."""

__version__ = "0.1.0"
