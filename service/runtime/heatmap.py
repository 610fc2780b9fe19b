"""A minimal PNG heatmap of an attribution map (service.visualization is not on main yet):
channels summed, positive red, negative blue, scaled by the largest magnitude."""

from __future__ import annotations

import io

import numpy as np

MIN_SIDE = 112


def heatmap_png(attributions: np.ndarray) -> bytes:
    """``attributions``: (C, H, W) or (H, W). Returns PNG bytes, upscaled to >= MIN_SIDE px."""
    from PIL import Image

    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"a heatmap needs a (C, H, W) or (H, W) map, got shape {a.shape}")
    peak = float(np.abs(a).max()) or 1.0
    v = a / peak
    rgb = np.full((*v.shape, 3), 255.0)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb[..., 1] -= 255.0 * (pos + neg)
    rgb[..., 2] -= 255.0 * pos
    rgb[..., 0] -= 255.0 * neg
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    scale = max(1, -(-MIN_SIDE // max(1, min(v.shape))))
    if scale > 1:
        img = img.resize((v.shape[1] * scale, v.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
