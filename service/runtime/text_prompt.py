"""A text model's prompt: ``inputs.text`` as it is, or ``inputs.template`` (a ``{name}`` template
and a value per slot) filled in, validated with errors naming the field."""

from __future__ import annotations

import string
from dataclasses import dataclass

from .errors import InvalidInput, shown
from .request import TemplatePayload, TextPayload


@dataclass
class Prompt:
    """A validated prompt: the text, and the template it was built from (if any)."""

    text: str
    field: str                                  # "inputs.text" | "inputs.template"
    template: TemplatePayload | None = None


def parse_prompt(p: object, model: str) -> Prompt:
    """A request's ``inputs`` as a validated prompt (errors name ``inputs.text`` /
    ``inputs.template``; ``model`` names the model refusing other inputs)."""
    if isinstance(p, TextPayload):
        if not p.text.strip():
            raise InvalidInput("inputs.text", "is empty; send a prompt")
        return Prompt(p.text, "inputs.text")
    if isinstance(p, TemplatePayload):
        slots = template_slots(p.template)
        missing = [s for s in slots if s not in p.values]
        if missing:
            raise InvalidInput("inputs.template.values",
                               f"no value for the placeholder {shown(missing[0])}", slots)
        for key in p.values:
            if key not in slots:
                raise InvalidInput(f"inputs.template.values.{key}",
                                   f"{shown(key)} is not a placeholder of the template",
                                   slots)
        for key in p.baselines:
            if key not in slots:
                raise InvalidInput(f"inputs.template.baselines.{key}",
                                   f"{shown(key)} is not a feature of the template", slots)
        text = p.template.format(**p.values)
        if not text.strip():
            raise InvalidInput("inputs.template", "the filled template is empty")
        # the features in the template's order (a protobuf map has none of its own)
        ordered = TemplatePayload(p.template, {s: p.values[s] for s in slots},
                                  {s: p.baselines[s] for s in slots if s in p.baselines})
        return Prompt(text, "inputs.template", ordered)
    raise InvalidInput("inputs", f"model {model!r} takes a prompt: inputs.text or "
                       "inputs.template", ("text", "template"))


def template_slots(template: str) -> list[str]:
    """The ``{name}`` placeholders of a template, in order of first use; a malformed template,
    a positional ``{}`` or an indexed ``{a[0]}`` is refused naming ``inputs.template.template``."""
    where = "inputs.template.template"
    if not template.strip():
        raise InvalidInput(where, "is empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise InvalidInput(where, f"is not a valid template: {e}") from e
    slots: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise InvalidInput(where, f"placeholder {{{shown(name, 40)[1:-1]}}} must be a plain "
                               "name such as {country}")
        if name not in slots:
            slots.append(name)
    if not slots:
        raise InvalidInput(where, "has no {name} placeholder; send inputs.text to attribute to "
                           "the prompt's words")
    return slots


__all__ = ["Prompt", "parse_prompt", "template_slots"]
