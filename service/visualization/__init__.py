"""Attribution pictures: a pure numpy + pillow PNG renderer for the server, and
Captum-compatible matplotlib/HTML functions for notebooks."""

from .notebook import visualize_image_attr, visualize_image_attr_multiple
from .render import colormap, normalize_attr, render, render_png
from .text import VisualizationDataRecord, text_html, visualize_text

__all__ = ["render_png", "render", "normalize_attr", "colormap", "visualize_image_attr",
           "visualize_image_attr_multiple", "visualize_text", "text_html",
           "VisualizationDataRecord"]
