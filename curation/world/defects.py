"""Defects the simulated base model makes, with one unambiguous meaning each.

- wrong_count      group g is drawn with detail["count"] objects: the requested count ±1, never 0.
- wrong_color      group g is drawn in detail["color"], a colour no group of the scene uses.
- swapped_relation the two groups trade sides, so the relation is false (relation scenes only).
- missing_object   group g is not drawn at all (two-group scenes only: a one-group scene needs
                   something in it).
- extra_object     one unrequested object is added; its shape and its colour are both absent from
                   the scene, so it can never be mistaken for a requested group.
- lost_detail      every object is flat-shaded (no faces, highlights or texture) and the whole
                   image is blurred.

A scene carries at most one defect per group and at most one defect of each kind, and
missing_object excludes swapped_relation (a relation with one side missing cannot be swapped).
`apply_defects` turns a scene plus defects into the groups the renderer draws.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .scene import COLORS, SHAPES, SIZES, Scene

DEFECT_KINDS: tuple[str, ...] = (
    "wrong_count",
    "wrong_color",
    "swapped_relation",
    "missing_object",
    "extra_object",
    "lost_detail",
)
GROUP_KINDS: tuple[str, ...] = ("wrong_count", "wrong_color", "missing_object")

# How often a defective image carries two defects rather than one.
TWO_DEFECT_SHARE = 0.3


class InvalidDefect(ValueError):
    """A defect that is malformed, or that cannot apply to the scene it is given with."""


def _validate(kind: str, group: int | None, detail: dict) -> None:
    if kind not in DEFECT_KINDS:
        raise InvalidDefect(f"unknown defect kind {kind!r}")
    if kind in GROUP_KINDS:
        if not isinstance(group, int) or group < 0:
            raise InvalidDefect(f"{kind} needs a group index, got {group!r}")
    elif group is not None:
        raise InvalidDefect(f"{kind} applies to the whole image; group must be None")
    if not isinstance(detail, dict):
        raise InvalidDefect("detail must be a dict")
    if kind == "wrong_count" and not (isinstance(detail.get("count"), int) and detail["count"] >= 1):
        raise InvalidDefect("wrong_count needs detail['count'] >= 1")
    if kind == "wrong_color" and detail.get("color") not in COLORS:
        raise InvalidDefect("wrong_color needs detail['color'] naming a known colour")
    if kind == "extra_object":
        if detail.get("shape") not in SHAPES or detail.get("color") not in COLORS:
            raise InvalidDefect("extra_object needs detail['shape'] and detail['color']")
        if detail.get("size", "small") not in SIZES:
            raise InvalidDefect("extra_object detail['size'] must be a known size")


@dataclass(frozen=True)
class Defect:
    """A defect injected into a base-model render (see the module docstring for meanings)."""

    kind: str
    group: int | None
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self.kind, self.group, self.detail)

    def to_json(self) -> dict:
        return {"kind": self.kind, "group": self.group, "detail": dict(self.detail)}

    @classmethod
    def from_json(cls, data: dict):
        try:
            return cls(kind=data["kind"], group=data.get("group"), detail=dict(data.get("detail") or {}))
        except (KeyError, TypeError, AttributeError) as error:
            raise InvalidDefect(f"not a defect record: {data!r}") from error


@dataclass(frozen=True)
class FoundDefect(Defect):
    """A defect the offline teacher names after comparing images; same fields as `Defect`.

    Its detail may carry more than an injected defect's (e.g. how many extra objects were seen);
    `match_defects` compares only the fields both sides define.
    """


def match_key(defect: Defect) -> tuple:
    """The fields that identify a defect for matching (see `match_defects`)."""
    if defect.kind == "wrong_count":
        return (defect.kind, defect.group, defect.detail["count"])
    if defect.kind == "wrong_color":
        return (defect.kind, defect.group, defect.detail["color"])
    if defect.kind == "missing_object":
        return (defect.kind, defect.group)
    if defect.kind == "extra_object":
        return (defect.kind, defect.detail["shape"], defect.detail["color"])
    return (defect.kind,)


def match_defects(found, injected) -> tuple[int, int, int]:
    """(true positives, number found, number injected) for one image.

    The matching rule: a found defect is a true positive when it agrees with an injected defect
    not yet matched on
      - wrong_count:      the kind, the group and the count the image shows;
      - wrong_color:      the kind, the group and the colour the image shows;
      - missing_object:   the kind and the group;
      - extra_object:     the kind and the added object's shape and colour (its size is not
                          compared: it is a judgement, not an identity);
      - swapped_relation, lost_detail: the kind alone (they concern the whole image).
    Matching is a multiset intersection, so naming one defect twice earns one hit. Over a
    benchmark, precision = sum(true positives) / sum(found), recall = sum(true positives) /
    sum(injected).
    """
    found_keys = Counter(match_key(d) for d in found)
    injected_keys = Counter(match_key(d) for d in injected)
    true_pos = sum((found_keys & injected_keys).values())
    return true_pos, sum(found_keys.values()), sum(injected_keys.values())


# --- sampling -----------------------------------------------------------------------------


def sample_defects(scene: Scene, rng: np.random.Generator, rate: float, kinds=DEFECT_KINDS) -> list[Defect]:
    """With probability `rate`, one defect (two, compatible, in TWO_DEFECT_SHARE of those cases).

    Kinds that cannot apply to the scene (missing_object in a one-group scene, swapped_relation
    without a relation) are skipped; if none of `kinds` can apply, the list is empty.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate!r}")
    unknown = [k for k in kinds if k not in DEFECT_KINDS]
    if unknown:
        raise InvalidDefect(f"unknown defect kinds {unknown}")
    if rng.random() >= rate:
        return []
    wanted = 2 if rng.random() < TWO_DEFECT_SHARE else 1
    chosen: list[Defect] = []
    for _ in range(wanted):
        options = [k for k in kinds if _can_add(k, scene, chosen)]
        if not options:
            break
        kind = options[int(rng.integers(len(options)))]
        chosen.append(_make(kind, scene, chosen, rng))
    return chosen


def _free_groups(scene: Scene, chosen: list[Defect]) -> list[int]:
    taken = {d.group for d in chosen if d.kind in GROUP_KINDS}
    return [i for i in range(len(scene.groups)) if i not in taken]


def _can_add(kind: str, scene: Scene, chosen: list[Defect]) -> bool:
    kinds_taken = {d.kind for d in chosen}
    if kind in kinds_taken:
        return False
    if kind in GROUP_KINDS and not _free_groups(scene, chosen):
        return False
    if kind == "missing_object":
        return len(scene.groups) == 2 and "swapped_relation" not in kinds_taken
    if kind == "swapped_relation":
        return scene.relation is not None and "missing_object" not in kinds_taken
    return True


def _colours_in_use(scene: Scene, chosen: list[Defect]) -> set[str]:
    used = {g.color for g in scene.groups}
    used |= {d.detail["color"] for d in chosen if d.kind in ("wrong_color", "extra_object")}
    return used


def _make(kind: str, scene: Scene, chosen: list[Defect], rng: np.random.Generator) -> Defect:
    if kind in GROUP_KINDS:
        free = _free_groups(scene, chosen)
        group = free[int(rng.integers(len(free)))]
        if kind == "wrong_count":
            count = scene.groups[group].count
            deltas = [d for d in (-1, 1) if count + d >= 1]
            return Defect(kind, group, {"count": count + deltas[int(rng.integers(len(deltas)))]})
        if kind == "wrong_color":
            return Defect(kind, group, {"color": _pick_unused(COLORS, _colours_in_use(scene, chosen), rng)})
        return Defect(kind, group, {})
    if kind == "extra_object":
        shape = _pick_unused(SHAPES, {g.shape for g in scene.groups}, rng)
        color = _pick_unused(COLORS, _colours_in_use(scene, chosen), rng)
        size = SIZES[int(rng.integers(len(SIZES)))]
        return Defect(kind, None, {"shape": shape, "color": color, "size": size})
    return Defect(kind, None, {})


def _pick_unused(names, used: set[str], rng: np.random.Generator) -> str:
    options = [n for n in names if n not in used]
    return options[int(rng.integers(len(options)))]


# --- applying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawnGroup:
    """A group as the renderer draws it. `slot` is the layout region (a scene group index, or
    None for an extra object, which the layout puts wherever there is room)."""

    shape: str
    color: str
    count: int
    size: str
    slot: int | None


@dataclass(frozen=True)
class DrawPlan:
    """What to draw; `n_slots` is the scene's group count (a missing group keeps its region)."""

    groups: tuple[DrawnGroup, ...]
    n_slots: int
    swapped: bool
    flat: bool


def apply_defects(scene: Scene, defects) -> DrawPlan:
    """Check the defects against the scene and say what to draw. Raises InvalidDefect."""
    defects = list(defects)
    for d in defects:
        if not isinstance(d, Defect):
            raise InvalidDefect(f"expected Defect, got {type(d).__name__}")
    kinds = [d.kind for d in defects]
    if len(set(kinds)) != len(kinds):
        raise InvalidDefect("at most one defect of each kind")
    by_group: dict[int, Defect] = {}
    for d in defects:
        if d.kind in GROUP_KINDS:
            if d.group >= len(scene.groups):
                raise InvalidDefect(f"{d.kind} names group {d.group}; the scene has {len(scene.groups)}")
            if d.group in by_group:
                raise InvalidDefect(f"group {d.group} carries two defects")
            by_group[d.group] = d
    if "missing_object" in kinds and len(scene.groups) != 2:
        raise InvalidDefect("missing_object needs a two-group scene")
    if "swapped_relation" in kinds:
        if scene.relation is None:
            raise InvalidDefect("swapped_relation needs a scene with a relation")
        if "missing_object" in kinds:
            raise InvalidDefect("swapped_relation and missing_object exclude each other")

    drawn = []
    colours = {g.color for g in scene.groups}
    for index, group in enumerate(scene.groups):
        defect = by_group.get(index)
        count, color = group.count, group.color
        if defect is not None and defect.kind == "missing_object":
            continue
        if defect is not None and defect.kind == "wrong_count":
            count = defect.detail["count"]
            if abs(count - group.count) != 1:
                raise InvalidDefect(f"wrong_count must change {group.count} by one, got {count}")
        if defect is not None and defect.kind == "wrong_color":
            color = defect.detail["color"]
            if color in colours:
                raise InvalidDefect(f"wrong_color {color!r} is already used in the scene")
        drawn.append(DrawnGroup(group.shape, color, count, group.size, index))
    for d in defects:
        if d.kind == "extra_object":
            if d.detail["shape"] in {g.shape for g in scene.groups} or d.detail["color"] in {g.color for g in drawn} | colours:
                raise InvalidDefect("extra_object must use a shape and a colour absent from the scene")
            drawn.append(DrawnGroup(d.detail["shape"], d.detail["color"], 1, d.detail.get("size", "small"), None))
    return DrawPlan(tuple(drawn), n_slots=len(scene.groups), swapped="swapped_relation" in kinds, flat="lost_detail" in kinds)
