"""The offline teacher's answers, one module per prompt template (the template's name is the key).

A module here registers what the simulated teacher answers to the chats of one template:

    @answers("teacher_initial_thinking")
    def plan(values, images, seed) -> Answer: ...

`values` are the template's text values, `images` its images (PIL, RGB) by the names the
template shows them under. Every module of this package is imported when the package is, so a
new template's offline answer is a new file here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from PIL import Image


@dataclass(frozen=True)
class Answer:
    text: str
    #: What the simulator measured to write the text (for lineage; never wall-clock values).
    lineage: dict[str, Any] = field(default_factory=dict)


AnswerFn = Callable[[Mapping[str, str], Mapping[str, Image.Image], int], Answer]
_ANSWERS: dict[str, AnswerFn] = {}


class DuplicateAnswer(ValueError):
    """Two modules answer the same template: which one the offline teacher uses would be an accident."""


def answers(template: str) -> Callable[[AnswerFn], AnswerFn]:
    def register(fn: AnswerFn) -> AnswerFn:
        if template in _ANSWERS and _ANSWERS[template] is not fn:
            raise DuplicateAnswer(f"the offline template {template!r} is answered by both "
                                  f"{_ANSWERS[template].__module__} and {fn.__module__}")
        _ANSWERS[template] = fn
        return fn

    return register


def answer_for(template: str) -> AnswerFn | None:
    return _ANSWERS.get(template)


def answered_templates() -> tuple[str, ...]:
    return tuple(sorted(_ANSWERS))


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
