"""``LLMAttributionResult``: what ``LLMAttribution`` returns, with its plots (Captum 0.9)."""

from __future__ import annotations

from textwrap import shorten
from typing import Any

import torch
from torch import Tensor

from ._common import AttributionInputError


def _as_tensor(value: Any) -> Tensor:
    return value if isinstance(value, Tensor) else torch.tensor(value)


class LLMAttributionResult:
    """Attributions of an answer to the prompt's features.

    ``seq_attr``: ``(n_input_tokens,)`` for the whole answer; ``token_attr``:
    ``(n_output_tokens, n_input_tokens)`` per answer token, or ``None``; ``output_probs``:
    ``(n_output_tokens,)`` or ``None``. ``input_tokens``/``output_tokens`` label the axes.
    """

    def __init__(self, *, input_tokens: list[str], output_tokens: list[str], seq_attr: Any,
                 token_attr: Any = None, output_probs: Any = None,
                 inp: Any = None) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.seq_attr = seq_attr
        self.token_attr = token_attr
        self.output_probs = output_probs
        self.inp = inp

    @property
    def seq_attr(self) -> Tensor:
        return self._seq_attr

    @seq_attr.setter
    def seq_attr(self, value: Any) -> None:
        value = _as_tensor(value)
        if value.dim() != 1 or value.shape[0] != len(self.input_tokens):
            raise AttributionInputError(
                f"seq_attr must be 1-D with len(input_tokens) = {len(self.input_tokens)} "
                f"entries, got shape {tuple(value.shape)}")
        self._seq_attr = value

    @property
    def token_attr(self) -> Tensor | None:
        return self._token_attr

    @token_attr.setter
    def token_attr(self, value: Any) -> None:
        if value is not None:
            value = _as_tensor(value)
            want = (len(self.output_tokens), len(self.input_tokens))
            if tuple(value.shape) != want:
                raise AttributionInputError(
                    f"token_attr must have shape (len(output_tokens), len(input_tokens)) = "
                    f"{want}, got {tuple(value.shape)}")
        self._token_attr = value

    @property
    def output_probs(self) -> Tensor | None:
        return self._output_probs

    @output_probs.setter
    def output_probs(self, value: Any) -> None:
        if value is not None:
            value = _as_tensor(value)
            if value.dim() != 1 or value.shape[0] != len(self.output_tokens):
                raise AttributionInputError(
                    f"output_probs must be 1-D with len(output_tokens) = "
                    f"{len(self.output_tokens)} entries, got shape {tuple(value.shape)}")
        self._output_probs = value

    @property
    def seq_attr_dict(self) -> dict[str, float]:
        return dict(zip(self.input_tokens, self.seq_attr.cpu().tolist()))

    # ---- plots (matplotlib is imported only here)

    @staticmethod
    def _cmap() -> Any:
        import matplotlib.colors as mcolors

        return mcolors.LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])

    def _labels(self, tokens: list[str]) -> list[str]:
        return [shorten(repr(t)[1:-1], width=50, placeholder="...") for t in tokens]

    def plot_token_attr(self, show: bool = False) -> Any:
        """Heatmap of ``token_attr`` (answer tokens x prompt features); ``(fig, ax)`` or None."""
        if self.token_attr is None:
            raise ValueError("token_attr is None (the method gives no per-token attribution); "
                             "use plot_seq_attr")
        import matplotlib.pyplot as plt

        data = self.token_attr.detach().cpu().float().numpy()         # (n_out, n_in)
        bound = float(abs(data).max()) if data.size else 1.0
        fig, ax = plt.subplots()
        fig.set_size_inches(max(data.shape[1] * 1.3, 6.4), max(data.shape[0] / 2.5, 4.8))
        ax.grid(False)
        im = ax.imshow(data, vmin=-bound, vmax=bound, cmap=self._cmap(), aspect="auto")
        fig.colorbar(im, ax=ax).ax.set_ylabel("Token Attribution", rotation=-90, va="bottom")
        ax.set_xticks(range(data.shape[1]), labels=self._labels(self.input_tokens))
        ax.set_yticks(range(data.shape[0]), labels=[repr(t)[1:-1] for t in self.output_tokens])
        ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
        plt.setp(ax.get_xticklabels(), rotation=-30, ha="right", rotation_mode="anchor")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                shade = float(im.norm(data[i, j]))  # type: ignore[arg-type]
                ax.text(j, i, f"{data[i, j]:.4f}", ha="center", va="center",
                        color="black" if 0.2 < shade < 0.8 else "white")
        fig.set_facecolor("white")
        if show:
            plt.show()
            return None
        return fig, ax

    def plot_seq_attr(self, show: bool = False) -> Any:
        """Bar chart of ``seq_attr`` per prompt feature; ``(fig, ax)`` or None."""
        import matplotlib.pyplot as plt

        data = self.seq_attr.detach().cpu().float().numpy()           # (n_in,)
        fig, ax = plt.subplots()
        fig.set_size_inches(max(data.shape[0] / 2, 6.4), max(data.shape[0] / 4, 4.8))
        ax.set_xticks(range(data.shape[0]), labels=self._labels(self.input_tokens))
        ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
        plt.setp(ax.get_xticklabels(), rotation=-30, ha="right", rotation_mode="anchor")
        ax.bar(range(data.shape[0]), [max(v, 0) for v in data], align="center", color="#4772b3")
        ax.bar(range(data.shape[0]), [min(v, 0) for v in data], align="center", color="#d0365b")
        ax.set_ylabel("Sequence Attribution", rotation=90, va="bottom")
        fig.set_facecolor("white")
        if show:
            plt.show()
            return None
        return fig, ax
