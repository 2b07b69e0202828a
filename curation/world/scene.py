"""The scene grammar of the offline world: what a prompt can ask for, and the prompt text itself.

A scene is one or two groups of identical objects on a named background, optionally with a
spatial relation between the two groups (GenEval's task families: single object, two objects,
counting, colours, position, colour attribution). `scene_to_prompt` and `parse_prompt` are exact
inverses over this grammar, so the offline teacher can recover the request from the prompt text
alone, the way a real teacher reads a prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Object shapes the renderer draws and the analyser tells apart by geometry alone:
# ball = disc, cube = hexagonal silhouette, pyramid = triangle, ring = disc with a hole, star = non-convex.
SHAPES: tuple[str, ...] = ("ball", "cube", "pyramid", "ring", "star")

# Saturated colours, at least ~20 degrees apart in hue so that hue alone names them, and with a
# chroma well above any background's so that chroma alone separates objects from the background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (222, 30, 38),
    "orange": (240, 128, 16),
    "yellow": (236, 200, 18),
    "green": (24, 186, 58),
    "teal": (12, 184, 176),
    "blue": (34, 84, 232),
    "purple": (142, 44, 222),
    "pink": (232, 56, 168),
}

SIZES: tuple[str, ...] = ("small", "large")

# Group 0 <relation> group 1.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# Low-chroma backgrounds: base colour and the texture the renderer gives each.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey studio": (150, 150, 154),
    "beige paper": (230, 218, 194),
    "wooden table": (176, 156, 132),
    "white wall": (234, 233, 229),
}

MAX_COUNT = 4

_COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
_RELATION_PHRASES = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
_BACKGROUND_PHRASES = {
    "grey studio": "in a grey studio",
    "beige paper": "on beige paper",
    "wooden table": "on a wooden table",
    "white wall": "against a white wall",
}
_PROMPT_OPENING = "a photo of "


class InvalidScene(ValueError):
    """A Scene or ObjectGroup built with values outside the grammar."""


class PromptOutsideGrammar(ValueError):
    """`parse_prompt` met text the grammar cannot produce; `reason` is a short machine label."""

    def __init__(self, reason: str, message: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


@dataclass(frozen=True)
class ObjectGroup:
    shape: str
    color: str
    count: int
    size: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InvalidScene(f"unknown shape {self.shape!r}")
        if self.color not in COLORS:
            raise InvalidScene(f"unknown colour {self.color!r}")
        if self.size not in SIZES:
            raise InvalidScene(f"unknown size {self.size!r}")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise InvalidScene(f"count must be 1..{MAX_COUNT}, got {self.count!r}")

    def to_json(self) -> dict:
        return {"shape": self.shape, "color": self.color, "count": self.count, "size": self.size}

    @classmethod
    def from_json(cls, data: dict) -> ObjectGroup:
        try:
            return cls(shape=data["shape"], color=data["color"], count=int(data["count"]), size=data["size"])
        except (KeyError, TypeError, AttributeError) as error:
            raise InvalidScene(f"not an object group record: {data!r}") from error


@dataclass(frozen=True)
class Scene:
    groups: tuple[ObjectGroup, ...]
    relation: str | None
    background: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.groups) <= 2:
            raise InvalidScene(f"a scene has 1 or 2 groups, got {len(self.groups)}")
        if self.relation is not None:
            if self.relation not in RELATIONS:
                raise InvalidScene(f"unknown relation {self.relation!r}")
            if len(self.groups) != 2:
                raise InvalidScene("a relation needs exactly two groups")
        if self.background not in BACKGROUNDS:
            raise InvalidScene(f"unknown background {self.background!r}")
        # Two groups of the same shape and colour would be one group: neither a checker nor a
        # teacher could say which objects belong to which.
        keys = {(g.shape, g.color) for g in self.groups}
        if len(keys) != len(self.groups):
            raise InvalidScene("two groups have the same shape and colour")

    def to_json(self) -> dict:
        return {
            "groups": [g.to_json() for g in self.groups],
            "relation": self.relation,
            "background": self.background,
        }

    @classmethod
    def from_json(cls, data: dict) -> Scene:
        try:
            return cls(
                groups=tuple(ObjectGroup.from_json(g) for g in data["groups"]),
                relation=data.get("relation"),
                background=data["background"],
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise InvalidScene(f"not a scene record: {data!r}") from error


# --- sampling -----------------------------------------------------------------------------

# GenEval-style task families and how often each is drawn.
_TASKS: tuple[tuple[str, float], ...] = (
    ("single_object", 0.15),
    ("counting", 0.20),
    ("two_objects", 0.15),
    ("color_attribution", 0.15),
    ("position", 0.15),
    ("counting_position", 0.20),
)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene from the GenEval-like mix; all randomness comes from `rng`."""
    names = [name for name, _ in _TASKS]
    weights = np.array([w for _, w in _TASKS])
    task = names[rng.choice(len(names), p=weights / weights.sum())]
    background = _pick(rng, tuple(BACKGROUNDS))
    colors = [str(c) for c in rng.permutation(list(COLORS))[:2]]

    if task in ("single_object", "counting"):
        count = 1 if task == "single_object" else int(rng.integers(2, MAX_COUNT + 1))
        group = ObjectGroup(_pick(rng, SHAPES), colors[0], count, _pick(rng, SIZES))
        return Scene((group,), None, background)

    if task == "color_attribution" and rng.random() < 0.4:
        # Same object in two colours ("a red ball and a blue ball"): attribution is the whole test.
        shape = _pick(rng, SHAPES)
        shapes = [shape, shape]
    else:
        shapes = [str(s) for s in rng.permutation(list(SHAPES))[:2]]
    counts = [1, 1]
    if task == "counting_position":
        counts = [int(rng.integers(1, MAX_COUNT + 1)) for _ in range(2)]
    relation = _pick(rng, RELATIONS) if task in ("position", "counting_position") else None
    groups = tuple(ObjectGroup(shapes[i], colors[i], counts[i], _pick(rng, SIZES)) for i in range(2))
    return Scene(groups, relation, background)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


# --- prompt text --------------------------------------------------------------------------


def plural(shape: str) -> str:
    return shape + "s"


def describe_group(group: ObjectGroup) -> str:
    """'two small red balls' / 'a large blue cube' — the phrase the grammar uses for a group."""
    noun = group.shape if group.count == 1 else plural(group.shape)
    return f"{_COUNT_WORDS[group.count]} {group.size} {group.color} {noun}"


def background_phrase(background: str) -> str:
    return _BACKGROUND_PHRASES[background]


def relation_phrase(relation: str) -> str:
    return _RELATION_PHRASES[relation]


def scene_to_prompt(scene: Scene) -> str:
    """The one prompt the grammar gives this scene, e.g.
    'a photo of two small red balls to the left of a large blue cube, on a wooden table'."""
    subject = describe_group(scene.groups[0])
    if len(scene.groups) == 2:
        joiner = relation_phrase(scene.relation) if scene.relation else "and"
        subject = f"{subject} {joiner} {describe_group(scene.groups[1])}"
    return f"{_PROMPT_OPENING}{subject}, {background_phrase(scene.background)}"


def parse_prompt(text: str) -> Scene:
    """Inverse of `scene_to_prompt`, tolerant of case, extra spaces and a trailing period.

    Raises PromptOutsideGrammar with a reason such as 'unknown_object' or 'unparsable'.
    """
    if not isinstance(text, str):
        raise PromptOutsideGrammar("unparsable", "prompt is not a string")
    normal = re.sub(r"\s+", " ", text).strip().lower().rstrip(".").strip()
    normal = re.sub(r"\s+,", ",", normal)
    if not normal:
        raise PromptOutsideGrammar("empty")
    if not normal.startswith(_PROMPT_OPENING):
        raise PromptOutsideGrammar("unparsable", "expected the prompt to start with 'a photo of'")
    body = normal[len(_PROMPT_OPENING):]

    subject, separator, setting = body.rpartition(", ")
    if not separator:
        raise PromptOutsideGrammar("unparsable", "expected ', <background>' at the end")
    background = _lookup(_BACKGROUND_PHRASES, setting, "unknown_background")

    relation, group_texts = _split_groups(subject)
    groups = tuple(_parse_group(t) for t in group_texts)
    if len({(g.shape, g.color) for g in groups}) != len(groups):
        raise PromptOutsideGrammar("duplicate_groups", "two groups name the same coloured object")
    return Scene(groups, relation, background)


def _lookup(phrases: dict[str, str], phrase: str, reason: str) -> str:
    for name, candidate in phrases.items():
        if candidate == phrase:
            return name
    raise PromptOutsideGrammar(reason, repr(phrase))


def _split_groups(subject: str) -> tuple[str | None, list[str]]:
    """Split 'X <relation phrase> Y' or 'X and Y' into (relation, [X, Y]); one group otherwise."""
    joiners = [(" and ", None)] + [(f" {p} ", r) for r, p in _RELATION_PHRASES.items()]
    found = [(subject.index(j), j, r) for j, r in joiners if j in subject]
    if not found:
        return None, [subject]
    if len(found) > 1 or subject.count(found[0][1]) > 1:
        raise PromptOutsideGrammar("too_many_groups", "the grammar joins at most two groups")
    index, joiner, relation = found[0]
    return relation, [subject[:index], subject[index + len(joiner):]]


def _parse_group(text: str) -> ObjectGroup:
    words = text.split(" ")
    if len(words) != 4:
        # A known word in an unknown place still tells the caller more than 'unparsable'.
        if words and _singular(words[-1]) not in SHAPES:
            raise PromptOutsideGrammar("unknown_object", repr(words[-1]))
        raise PromptOutsideGrammar("unparsable", f"expected '<count> <size> <colour> <object>', got {text!r}")
    count_word, size, color, noun = words
    counts = {w: n for n, w in _COUNT_WORDS.items()}
    if count_word not in counts:
        raise PromptOutsideGrammar("unknown_count", repr(count_word))
    count = counts[count_word]
    if size not in SIZES:
        raise PromptOutsideGrammar("unknown_size", repr(size))
    if color not in COLORS:
        raise PromptOutsideGrammar("unknown_color", repr(color))
    shape = _singular(noun)
    if shape not in SHAPES:
        raise PromptOutsideGrammar("unknown_object", repr(noun))
    if (count == 1) != (noun == shape):
        raise PromptOutsideGrammar("unparsable", f"{count_word!r} does not agree with {noun!r}")
    return ObjectGroup(shape, color, count, size)


def _singular(noun: str) -> str:
    for shape in SHAPES:
        if plural(shape) == noun:
            return shape
    return noun
