"""A pure numpy + pillow renderer: attribution maps (and images) to PNG bytes, with Captum's
normalisation, methods, signs and default colour maps; no matplotlib.

Layouts: numpy arrays are (H, W) or (H, W, C); torch tensors are (C, H, W) or (1, C, H, W)
and are moved to (H, W, C). Channels of an attribution map are summed, as Captum does.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np

Method = Literal["heat_map", "blended_heat_map", "original_image", "masked_image",
                 "alpha_scaling"]
Sign = Literal["all", "positive", "negative", "absolute_value"]
METHODS = ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling")
SIGNS = ("all", "positive", "negative", "absolute_value")

# Colour ramps, evenly spaced anchors interpolated linearly (matplotlib's defaults for
# Captum's signs: the ColorBrewer 9-class Greens, Reds and Blues, and red-white-green).
_RAMPS = {
    "positive": ("f7fcf5 e5f5e0 c7e9c0 a1d99b 74c476 41ab5d 238b45 006d2c 00441b"),
    "negative": ("fff5f0 fee0d2 fcbba1 fc9272 fb6a4a ef3b2c cb181d a50f15 67000d"),
    "absolute_value": ("f7fbff deebf7 c6dbef 9ecae1 6baed6 4292c6 2171b5 08519c 08306b"),
    "all": "ff0000 ffffff 008000",
}


def _anchors(sign: str) -> np.ndarray:
    return np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in _RAMPS[sign].split()],
                    dtype=np.float64) / 255.0


def colormap(values: np.ndarray, sign: str) -> np.ndarray:
    """Values in [0, 1] (position along the sign's ramp) -> RGB floats in [0, 1], (..., 3)."""
    anchors = _anchors(sign)
    pos = np.clip(values, 0.0, 1.0) * (len(anchors) - 1)
    low = np.minimum(np.floor(pos).astype(int), len(anchors) - 2)
    frac = (pos - low)[..., None]
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def to_hwc(array: Any, name: str) -> np.ndarray:
    """A numpy (H, W[, C]) array from a numpy array or a torch (C, H, W)/(1, C, H, W) tensor."""
    if hasattr(array, "detach"):
        t = array.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        arr = t.numpy()
        if arr.ndim == 3:
            arr = np.transpose(arr, (1, 2, 0))
    else:
        arr = np.asarray(array)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must be an (H, W) or (H, W, C) map, got shape {arr.shape}")
    return arr.astype(np.float64)


def _cumulative_threshold(values: np.ndarray, percentile: float) -> float:
    """The smallest value whose cumulative sum (ascending) reaches ``percentile`` % of the
    total."""
    ordered = np.sort(values.reshape(-1))
    sums = np.cumsum(ordered)
    return float(ordered[np.nonzero(sums >= sums[-1] * 0.01 * percentile)[0][0]])


def normalize_attr(attr: np.ndarray, sign: str, outlier_perc: float = 2) -> np.ndarray:
    """Captum's normalisation: keep the sign's part, divide by the value below which
    ``100 - outlier_perc`` % of the total |attribution| lies, clip to [-1, 1]."""
    if not 0 <= outlier_perc <= 100:
        raise ValueError(f"`outlier_perc` must be in [0, 100], got {outlier_perc!r}")
    if attr.ndim == 3:
        attr = attr.sum(axis=2)
    if sign == "positive":
        attr = np.maximum(attr, 0)
    elif sign == "negative":
        attr = np.minimum(attr, 0)
    elif sign == "absolute_value":
        attr = np.abs(attr)
    threshold = _cumulative_threshold(np.abs(attr), 100.0 - outlier_perc)
    if threshold == 0:
        return np.zeros_like(attr)
    if sign == "negative":
        threshold = -threshold
    return np.clip(attr / threshold, -1, 1)


def _image_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) RGB in 0..255; images with values <= 1 are scaled by 255, as Captum does."""
    if image.ndim == 2:
        image = image[..., None]
    if image.max() <= 1.0:
        image = image * 255
    image = np.clip(image.astype(int), 0, 255)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[..., :3].astype(np.float64)


def _ramp_position(norm: np.ndarray, sign: str) -> np.ndarray:
    return (norm + 1) / 2 if sign == "all" else norm


def render(attribution: Any, image: Any = None, method: str = "heat_map",
           sign: str = "absolute_value", outlier_perc: float = 2, alpha_overlay: float = 0.5,
           colorbar: bool = False) -> np.ndarray:
    """The picture as a uint8 array: (H, W, 3), or (H, W, 4) for alpha_scaling; a colour
    bar adds rows at the bottom."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    if sign not in SIGNS:
        raise ValueError(f"`sign` must be one of {', '.join(SIGNS)}; got {sign!r}")
    attr = to_hwc(attribution, "attribution")
    img = None if image is None else _image_uint8(to_hwc(image, "image"))
    if img is not None and img.shape[:2] != attr.shape[:2]:
        raise ValueError(f"`image` is {img.shape[:2]} pixels, `attribution` {attr.shape[:2]}")
    if img is None and method != "heat_map":
        raise ValueError(f"`image` is needed for method {method!r}")
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(f"method {method!r} needs a single sign, not sign='all'")
    norm = normalize_attr(attr, sign, outlier_perc)
    heat = colormap(_ramp_position(norm, sign), sign) * 255
    if method == "heat_map":
        out = heat
    elif method == "blended_heat_map":
        assert img is not None
        gray = img.mean(axis=2)
        span = gray.max() - gray.min()
        gray = (gray - gray.min()) / span * 255 if span > 0 else np.zeros_like(gray)
        out = alpha_overlay * heat + (1 - alpha_overlay) * gray[..., None]
    elif method == "original_image":
        assert img is not None
        out = img
    elif method == "masked_image":
        assert img is not None
        out = np.clip((img * norm[..., None]).astype(int), 0, 255)
    else:
        assert img is not None
        alpha = np.clip((norm[..., None] * 255).astype(int), 0, 255)
        out = np.concatenate([img, alpha], axis=2)
    pixels = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if colorbar:
        pixels = np.concatenate([pixels, _colorbar(pixels.shape[1], pixels.shape[2], sign)])
    return pixels


def _colorbar(width: int, channels: int, sign: str) -> np.ndarray:
    """A horizontal bar of the sign's ramp from its lowest to its highest value, under a
    white gap."""
    height = max(4, width // 16)
    ramp = colormap(np.linspace(0, 1, width), sign) * 255                  # (W, 3)
    bar = np.repeat(ramp[None], height, axis=0)
    gap = np.full((max(1, height // 2), width, 3), 255.0)
    rows = np.concatenate([gap, bar])
    if channels == 4:
        rows = np.concatenate([rows, np.full(rows.shape[:2] + (1,), 255.0)], axis=2)
    return np.clip(np.rint(rows), 0, 255).astype(np.uint8)


def colorbar_height(width: int) -> int:
    """Rows a colour bar adds under a picture of this width."""
    height = max(4, width // 16)
    return height + max(1, height // 2)


def render_png(attribution: Any, image: Any = None, method: str = "heat_map",
               sign: str = "absolute_value", outlier_perc: float = 2,
               alpha_overlay: float = 0.5, colorbar: bool = False) -> bytes:
    """PNG bytes of ``render(...)``: RGB, or RGBA for alpha_scaling."""
    from PIL import Image

    pixels = render(attribution, image, method, sign, outlier_perc, alpha_overlay, colorbar)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGBA" if pixels.shape[2] == 4 else "RGB").save(buf, "PNG")
    return buf.getvalue()
