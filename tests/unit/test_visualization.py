"""The PNG renderer (numpy + pillow) and the notebook functions, with captum's visualization
module and matplotlib's colour maps as oracles."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")

from captum.attr._utils import visualization as cv  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from service.visualization import (  # noqa: E402
    VisualizationDataRecord,
    colormap,
    normalize_attr,
    render,
    render_png,
    text_html,
    visualize_image_attr,
    visualize_image_attr_multiple,
)
from service.visualization.render import colorbar_height  # noqa: E402

RNG = np.random.default_rng(0)
ATTR = RNG.normal(size=(12, 20, 3))
IMAGE = RNG.uniform(size=(12, 20, 3))
SIGNS = ("all", "positive", "negative", "absolute_value")


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("outlier_perc", [2, 10])
def test_normalisation_matches_captum(sign, outlier_perc):
    ours = normalize_attr(ATTR, sign, outlier_perc)
    theirs = cv._normalize_attr(ATTR.sum(axis=2), sign, outlier_perc)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("sign, cmap", [
    ("positive", colormaps["Greens"]), ("negative", colormaps["Reds"]),
    ("absolute_value", colormaps["Blues"]),
    ("all", LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])),
])
def test_colour_ramps_match_matplotlib_defaults(sign, cmap):
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(colormap(x, sign), cmap(x)[:, :3], atol=0.01)


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("method, sign, mode", [
    ("heat_map", "all", "RGB"), ("blended_heat_map", "positive", "RGB"),
    ("original_image", "absolute_value", "RGB"), ("masked_image", "negative", "RGB"),
    ("alpha_scaling", "absolute_value", "RGBA"),
])
@pytest.mark.parametrize("colorbar", [False, True])
def test_render_png_is_a_valid_png_of_the_right_size(method, sign, mode, colorbar):
    img = _png(render_png(ATTR, IMAGE, method=method, sign=sign, colorbar=colorbar))
    height = 12 + (colorbar_height(20) if colorbar else 0)
    assert img.size == (20, height)
    assert img.mode == mode


def test_known_map_colours():
    attr = np.zeros((4, 5))
    attr[1, 2] = 3.0
    attr[3, 0] = -3.0
    pos = render(attr, sign="positive", outlier_perc=0)
    assert tuple(pos[1, 2]) == (0x00, 0x44, 0x1B)      # darkest green
    assert tuple(pos[0, 0]) == (0xF7, 0xFC, 0xF5)      # lightest green for 0
    both = render(attr, sign="all", outlier_perc=0)
    assert tuple(both[1, 2]) == (0, 128, 0)             # green for +1
    assert tuple(both[3, 0]) == (255, 0, 0)             # red for -1
    assert tuple(both[0, 0]) == (255, 255, 255)         # white for 0
    neg = render(attr, sign="negative", outlier_perc=0)
    assert tuple(neg[3, 0]) == (0x67, 0x00, 0x0D)      # darkest red


def test_masked_image_and_alpha_scaling_follow_the_map():
    attr = np.zeros((2, 2))
    attr[0, 0] = 1.0
    image = np.full((2, 2, 3), 200.0)
    masked = render(attr, image, method="masked_image", sign="positive", outlier_perc=0)
    assert tuple(masked[0, 0]) == (200, 200, 200) and tuple(masked[1, 1]) == (0, 0, 0)
    alpha = render(attr, image, method="alpha_scaling", sign="positive", outlier_perc=0)
    assert alpha[0, 0, 3] == 255 and alpha[1, 1, 3] == 0


def test_torch_chw_tensors_are_accepted():
    a = torch.tensor(ATTR).permute(2, 0, 1).unsqueeze(0)
    np.testing.assert_array_equal(render(a, sign="all"), render(ATTR, sign="all"))


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "nope"}, "method"), ({"sign": "nope"}, "sign"),
    ({"method": "masked_image"}, "image"),
    ({"method": "masked_image", "image": IMAGE, "sign": "all"}, "sign"),
    ({"image": IMAGE[:5]}, "image"), ({"outlier_perc": 101}, "outlier_perc"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_png(ATTR, **kwargs)


@pytest.mark.parametrize("method, sign", [
    ("heat_map", "all"), ("blended_heat_map", "positive"), ("masked_image", "absolute_value"),
    ("alpha_scaling", "negative"), ("original_image", "all"),
])
def test_notebook_function_draws_what_captum_draws(method, sign):
    ours, ax = visualize_image_attr(ATTR, IMAGE, method, sign, use_pyplot=False,
                                    show_colorbar=True)
    _, cax = cv.visualize_image_attr(ATTR, IMAGE, method, sign, use_pyplot=False,
                                     show_colorbar=True)
    assert len(ax.images) == len(cax.images)
    for a, b in zip(ax.images, cax.images):
        np.testing.assert_allclose(np.asarray(a.get_array()), np.asarray(b.get_array()))
    assert len(ours.axes) == 2  # the colour bar axis


def test_notebook_multiple():
    fig, axes = visualize_image_attr_multiple(ATTR, IMAGE, ["heat_map", "original_image"],
                                              ["all", "all"], titles=["a", "b"],
                                              use_pyplot=False)
    assert len(axes) == 2 and axes[0].get_title() == "a"
    with pytest.raises(ValueError, match="signs"):
        visualize_image_attr_multiple(ATTR, IMAGE, ["heat_map"], ["all", "all"],
                                      use_pyplot=False)


def test_text_html_colours_match_captum_and_escape_words():
    rec = VisualizationDataRecord(torch.tensor([0.5, -0.25, 0.0]), 0.9, 1, 1, 1, 0.3,
                                  ["good", "<script>", "x"], 0.0)
    markup = text_html([rec])
    for v in (0.5, -0.25, 0.0):
        assert cv._get_color(v) in markup
    assert "<script>" not in markup.replace("#script", "")
    assert "#script" in markup  # special tokens as in captum
    assert "1 (0.90)" in markup
