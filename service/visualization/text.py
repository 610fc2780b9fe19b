"""Highlighted text: Captum's ``VisualizationDataRecord`` and ``visualize_text`` as HTML,
with words escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


class VisualizationDataRecord:
    """One row of the table: word attributions and the prediction they explain."""

    __slots__ = ["word_attributions", "pred_prob", "pred_class", "true_class", "attr_class",
                 "attr_score", "raw_input_ids", "convergence_score"]

    def __init__(self, word_attributions: Any, pred_prob: float, pred_class: Any,
                 true_class: Any, attr_class: Any, attr_score: float,
                 raw_input_ids: Sequence[str], convergence_score: Any) -> None:
        self.word_attributions = word_attributions
        self.pred_prob = pred_prob
        self.pred_class = pred_class
        self.true_class = true_class
        self.attr_class = attr_class
        self.attr_score = attr_score
        self.raw_input_ids = raw_input_ids
        self.convergence_score = convergence_score


def word_color(attr: float) -> str:
    """Green for positive, red for negative, lighter when closer to 0 (Captum's scale)."""
    attr = max(-1.0, min(1.0, float(attr)))
    if attr > 0:
        return f"hsl(120, 75%, {100 - int(50 * attr)}%)"
    return f"hsl(0, 75%, {100 - int(-40 * attr)}%)"


def _cell(text: Any) -> str:
    return f'<td><text style="padding-right:2em"><b>{html.escape(str(text))}</b></text></td>'


def _token(word: str) -> str:
    if word.startswith("<") and word.endswith(">"):
        word = "#" + word.strip("<>")
    return html.escape(word)


def format_word_importances(words: Sequence[str], importances: Any) -> str:
    if importances is None or len(importances) == 0:
        return "<td></td>"
    values = [float(v) for v in (importances.tolist() if hasattr(importances, "tolist")
                                 else importances)]
    if len(words) > len(values):
        raise ValueError(f"{len(words)} words but only {len(values)} importances")
    marks = "".join(
        f'<mark style="background-color: {word_color(v)}; opacity:1.0; line-height:1.75">'
        f'<font color="black"> {_token(w)} </font></mark>' for w, v in zip(words, values))
    return f"<td>{marks}</td>"


def text_html(datarecords: Iterable[VisualizationDataRecord], legend: bool = True) -> str:
    """The HTML table (a string)."""
    parts = ["<table width: 100%>"]
    rows = ["<tr><th>True Label</th><th>Predicted Label</th><th>Attribution Label</th>"
            "<th>Attribution Score</th><th>Word Importance</th>"]
    for r in datarecords:
        rows.append("".join(["<tr>", _cell(r.true_class),
                             _cell(f"{r.pred_class} ({r.pred_prob:.2f})"),
                             _cell(r.attr_class), _cell(f"{r.attr_score:.2f}"),
                             format_word_importances(r.raw_input_ids, r.word_attributions),
                             "<tr>"]))
    if legend:
        parts.append('<div style="border-top: 1px solid; margin-top: 5px; padding-top: 5px; '
                     'display: inline-block"><b>Legend: </b>')
        for value, label in zip((-1, 0, 1), ("Negative", "Neutral", "Positive")):
            parts.append('<span style="display: inline-block; width: 10px; height: 10px; '
                         f'border: 1px solid; background-color: {word_color(value)}"></span> '
                         f"{label}  ")
        parts.append("</div>")
    parts.append("".join(rows))
    parts.append("</table>")
    return "".join(parts)


def visualize_text(datarecords: Iterable[VisualizationDataRecord], legend: bool = True) -> Any:
    """Captum's visualize_text: in a notebook (IPython installed) displays the table and
    returns an ``IPython.display.HTML``; otherwise returns the HTML string."""
    markup = text_html(datarecords, legend)
    try:
        from IPython.display import HTML, display
    except ImportError:
        return markup
    obj = HTML(markup)
    display(obj)
    return obj
