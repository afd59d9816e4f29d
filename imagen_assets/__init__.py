"""imagen-assets: campaign images from hosted Imagen 4 APIs, made, stored and approved in Django."""

__version__ = "0.1.0"
