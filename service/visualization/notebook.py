"""Captum-compatible matplotlib figures for notebooks: ``visualize_image_attr`` and
``visualize_image_attr_multiple``. matplotlib is imported only here, when called (the
``notebook`` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .render import METHODS, SIGNS, _image_uint8, normalize_attr


def _pyplot() -> Any:
    try:
        import matplotlib
        from matplotlib import pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "visualize_image_attr needs matplotlib: pip install 'explain-service[notebook]' "
            "(or use service.visualization.render_png, which does not)"
        ) from exc
    return matplotlib, plt


def _default_cmap(sign: str) -> tuple[Any, float, float]:
    matplotlib, _ = _pyplot()
    if sign == "all":
        return (matplotlib.colors.LinearSegmentedColormap.from_list(
            "RdWhGn", ["red", "white", "green"]), -1, 1)
    return {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign], 0, 1


def visualize_image_attr(attr: np.ndarray, original_image: np.ndarray | None = None,
                         method: str = "heat_map", sign: str = "absolute_value",
                         plt_fig_axis: tuple[Any, Any] | None = None,
                         outlier_perc: float = 2, cmap: Any = None, alpha_overlay: float = 0.5,
                         show_colorbar: bool = False, title: str | None = None,
                         fig_size: tuple[int, int] = (6, 6),
                         use_pyplot: bool = True) -> tuple[Any, Any]:
    """Draws one view of an (H, W[, C]) attribution map; returns (figure, axis)."""
    matplotlib, plt = _pyplot()
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    if sign not in SIGNS:
        raise ValueError(f"`sign` must be one of {', '.join(SIGNS)}; got {sign!r}")
    if plt_fig_axis is not None:
        fig, axis = plt_fig_axis
    elif use_pyplot:
        fig, axis = plt.subplots(figsize=fig_size)
    else:
        fig = matplotlib.figure.Figure(figsize=fig_size)
        axis = fig.subplots()
    image = None
    if original_image is not None:
        image = np.asarray(original_image)
        if image.max() <= 1.0:
            image = np.clip((image * 255).astype(int), 0, 255)
    elif method != "heat_map":
        raise ValueError(f"`original_image` is needed for method {method!r}")
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(f"method {method!r} needs a single sign, not sign='all'")
    axis.xaxis.set_ticks_position("none")
    axis.yaxis.set_ticks_position("none")
    axis.set_yticklabels([])
    axis.set_xticklabels([])
    axis.grid(visible=False)
    norm = normalize_attr(np.asarray(attr, dtype=np.float64), sign, outlier_perc)
    default, vmin, vmax = _default_cmap(sign)
    cmap = default if cmap is None else cmap
    heat = None
    if method == "heat_map" or image is None:  # image is None only for heat_map (see above)
        heat = axis.imshow(norm, cmap=cmap, vmin=vmin, vmax=vmax)
    elif method == "blended_heat_map":
        axis.imshow(np.mean(image, axis=2), cmap="gray")
        heat = axis.imshow(norm, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha_overlay)
    elif method == "original_image":
        shown = np.squeeze(image, axis=2) if image.ndim > 2 and image.shape[2] == 1 else image
        axis.imshow(shown)
    elif method == "masked_image":
        axis.imshow(np.clip((image * norm[..., None]).astype(int), 0, 255))
    else:
        alpha = np.clip((norm[..., None] * 255).astype(int), 0, 255)
        axis.imshow(np.concatenate([image, alpha], axis=2))
    if show_colorbar:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        bar_axis = make_axes_locatable(axis).append_axes("bottom", size="5%", pad=0.1)
        if heat is not None:
            fig.colorbar(heat, orientation="horizontal", cax=bar_axis)
        else:
            bar_axis.axis("off")
    if title:
        axis.set_title(title)
    if use_pyplot:
        plt.show()
    return fig, axis


def visualize_image_attr_multiple(attr: np.ndarray, original_image: np.ndarray | None,
                                  methods: list[str], signs: list[str],
                                  titles: list[str] | None = None,
                                  fig_size: tuple[int, int] = (8, 6), use_pyplot: bool = True,
                                  **kwargs: Any) -> tuple[Any, Any]:
    """Several views side by side; returns (figure, axis or list of axes)."""
    matplotlib, plt = _pyplot()
    if len(methods) != len(signs):
        raise ValueError(f"`methods` has {len(methods)} entries, `signs` {len(signs)}")
    if titles is not None and len(titles) != len(methods):
        raise ValueError(f"`titles` has {len(titles)} entries, `methods` {len(methods)}")
    fig = plt.figure(figsize=fig_size) if use_pyplot else matplotlib.figure.Figure(fig_size)
    axes = fig.subplots(1, len(methods), squeeze=True)
    axis_list = [axes] if len(methods) == 1 else list(np.asarray(axes).tolist())
    for i, (method, sign) in enumerate(zip(methods, signs)):
        visualize_image_attr(attr, original_image, method, sign, plt_fig_axis=(fig, axis_list[i]),
                             use_pyplot=False, title=titles[i] if titles else None, **kwargs)
    fig.tight_layout()
    if use_pyplot:
        plt.show()
    return fig, axes if len(methods) == 1 else axis_list


__all__ = ["visualize_image_attr", "visualize_image_attr_multiple", "_image_uint8"]
