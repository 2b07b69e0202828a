"""GenEval-style checking of an image against a scene, and the image comparison the offline
teacher relies on. Both read pixels only through `analyse`.

Per group: count (objects of the group's shape and colour), colour (every object of the group's
shape is in the group's colour, apart from another group's own objects), size, and position
(the relation between the two groups' centroids). An image is accurate when every group check,
the relation and "nothing unrequested" pass; `score` is the fraction of those checks passed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from PIL import Image

from .analyse import DetectedObject, Observation, analyse
from .defects import FoundDefect
from .scene import Scene

# relation → (centroid axis, sign): group 0 <relation> group 1 when sign * (c0 - c1) > 0.
RELATION_AXES = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}
OPPOSITE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# lost_detail: the initial image keeps less than this share of the better image's backdrop grain.
# Blur leaves 10-20% of it; two sharp renders of the same backdrop agree within ~5%.
LOST_DETAIL_RATIO = 0.5


@dataclass(frozen=True)
class ExpectedGroup:
    """A group an image should show. Unlike ObjectGroup it allows any count, because it may be
    read off an image rather than a prompt."""

    shape: str
    color: str
    count: int
    size: str


@dataclass(frozen=True)
class Expectation:
    groups: tuple[ExpectedGroup, ...]
    relation: str | None

    @classmethod
    def from_scene(cls, scene: Scene) -> Expectation:
        groups = tuple(ExpectedGroup(g.shape, g.color, g.count, g.size) for g in scene.groups)
        return cls(groups, scene.relation)

    @classmethod
    def from_observation(cls, observation: Observation) -> Expectation:
        """What an image shows, as groups in reading order; with exactly two groups, the relation
        along the axis on which they lie furthest apart."""
        clusters: dict[tuple[str, str], list[DetectedObject]] = {}
        for obj in observation.objects:
            clusters.setdefault((obj.shape, obj.color), []).append(obj)
        groups = tuple(
            ExpectedGroup(shape, color, len(objs), Counter(o.size for o in objs).most_common(1)[0][0])
            for (shape, color), objs in clusters.items()
        )
        relation = None
        if len(groups) == 2:
            relation = relation_between(*(centroid(objs) for objs in clusters.values()))
        return cls(groups, relation)


@dataclass(frozen=True)
class GroupCheck:
    group: int
    shape: str
    color: str
    expected_count: int
    found_count: int
    count_ok: bool
    color_ok: bool
    size_ok: bool
    position_ok: bool | None  # None when the prompt states no relation

    def passed(self) -> bool:
        return self.count_ok and self.color_ok and self.size_ok and self.position_ok is not False


@dataclass(frozen=True)
class CheckResult:
    groups: tuple[GroupCheck, ...]
    relation_ok: bool | None
    unexpected: tuple[tuple[str, str, int], ...]  # (shape, colour, count) that no group asked for
    accuracy: float  # 1.0 when every check passes, else 0.0 (average over images for GenEval accuracy)
    score: float  # fraction of individual checks passed

    def to_json(self) -> dict:
        return {
            "groups": [asdict(g) for g in self.groups],
            "relation_ok": self.relation_ok,
            "unexpected": [list(u) for u in self.unexpected],
            "accuracy": self.accuracy,
            "score": self.score,
        }


def centroid(objects) -> tuple[float, float]:
    return (sum(o.centroid[0] for o in objects) / len(objects), sum(o.centroid[1] for o in objects) / len(objects))


def relation_holds(relation: str, first: tuple[float, float], second: tuple[float, float]) -> bool:
    axis, sign = RELATION_AXES[relation]
    return sign * (first[axis] - second[axis]) > 0


def relation_between(first: tuple[float, float], second: tuple[float, float]) -> str:
    """The relation of `first` to `second` along the axis where they differ most."""
    dx, dy = first[0] - second[0], first[1] - second[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def check(image: Image.Image, scene: Scene) -> CheckResult:
    """Check an image against the scene its prompt describes."""
    return check_observation(analyse(image), scene)


def check_observation(observation: Observation, scene: Scene) -> CheckResult:
    expectation = Expectation.from_scene(scene)
    shapes = {g.shape for g in expectation.groups}
    requested = {(g.shape, g.color) for g in expectation.groups}
    located = {}
    checks = []
    for index, group in enumerate(expectation.groups):
        matched = observation.of(group.shape, group.color)
        if matched:
            located[index] = centroid(matched)
        # Objects of this shape in a colour no group asks for: the colour is wrong.
        same_shape = [o for o in observation.objects if o.shape == group.shape]
        stray = [o for o in same_shape if (o.shape, o.color) not in requested]
        checks.append((index, group, matched, bool(matched) and not stray))

    relation_ok = None
    if expectation.relation is not None:
        relation_ok = len(located) == 2 and relation_holds(expectation.relation, located[0], located[1])

    group_checks = tuple(
        GroupCheck(
            group=index,
            shape=group.shape,
            color=group.color,
            expected_count=group.count,
            found_count=len(matched),
            count_ok=len(matched) == group.count,
            color_ok=color_ok,
            size_ok=bool(matched) and all(o.size == group.size for o in matched),
            position_ok=relation_ok,
        )
        for index, group, matched, color_ok in checks
    )
    unexpected = Counter((o.shape, o.color) for o in observation.objects if o.shape not in shapes)
    unexpected_list = tuple((shape, color, n) for (shape, color), n in sorted(unexpected.items()))

    flags = [f for g in group_checks for f in (g.count_ok, g.color_ok, g.size_ok)]
    flags += [relation_ok] if relation_ok is not None else []
    flags.append(not unexpected_list)
    return CheckResult(
        groups=group_checks,
        relation_ok=relation_ok,
        unexpected=unexpected_list,
        accuracy=1.0 if all(flags) else 0.0,
        score=sum(flags) / len(flags),
    )


# --- the teacher's comparison ----------------------------------------------------------------


def find_defects(expectation: Expectation, initial: Observation, better: Observation) -> list[FoundDefect]:
    """Defects of the initial image: where it departs from the expectation and the better image
    does not. Ignoring departures both images share keeps analysis slips out of the critique.
    Group indices refer to `expectation.groups`."""
    shared = {_departure(d) for d in discrepancies(expectation, better)}
    found = [d for d in discrepancies(expectation, initial) if _departure(d) not in shared]
    if initial.background_detail < LOST_DETAIL_RATIO * better.background_detail:
        found.append(FoundDefect("lost_detail", None, {
            "detail": initial.detail,
            "background_detail": initial.background_detail,
        }))
    return found


def _departure(defect: FoundDefect) -> tuple:
    """What makes two images' departures "the same": the kind and group, whatever the count or
    colour shown; for unrequested objects, their shape and colour."""
    if defect.kind == "extra_object":
        return (defect.kind, defect.detail["shape"], defect.detail["color"])
    return (defect.kind, defect.group)


def discrepancies(expectation: Expectation, observation: Observation) -> list[FoundDefect]:
    """How one image departs from the expectation, named with the base model's defect kinds.

    A group shown in the wrong number is wrong_count. A group absent in its colour is wrong_color
    when an unrequested colour of its shape is present (the one whose count fits best), else
    missing_object. Whatever is left unexplained is extra_object, one per (shape, colour). The
    relation is judged between the groups as found, recoloured ones included.
    """
    clusters: dict[tuple[str, str], list[DetectedObject]] = {}
    for obj in observation.objects:
        clusters.setdefault((obj.shape, obj.color), []).append(obj)
    requested = {(g.shape, g.color) for g in expectation.groups}
    unclaimed = {key: objs for key, objs in clusters.items() if key not in requested}

    found: list[FoundDefect] = []
    located: dict[int, list[DetectedObject]] = {}
    for index, group in enumerate(expectation.groups):
        objs = clusters.get((group.shape, group.color))
        if objs:
            located[index] = objs
            if len(objs) != group.count:
                found.append(FoundDefect("wrong_count", index, {"count": len(objs), "expected": group.count}))
    for index, group in enumerate(expectation.groups):
        if index in located:
            continue
        candidates = [key for key in unclaimed if key[0] == group.shape]
        if candidates:
            key = min(candidates, key=lambda k: (abs(len(unclaimed[k]) - group.count), k[1]))
            located[index] = unclaimed.pop(key)
            found.append(FoundDefect("wrong_color", index, {"color": key[1], "expected": group.color}))
        else:
            found.append(FoundDefect("missing_object", index, {}))
    for (shape, color), objs in sorted(unclaimed.items()):
        size = Counter(o.size for o in objs).most_common(1)[0][0]
        found.append(FoundDefect("extra_object", None, {"shape": shape, "color": color, "size": size, "count": len(objs)}))
    if expectation.relation is not None and len(located) == 2:
        first, second = centroid(located[0]), centroid(located[1])
        if not relation_holds(expectation.relation, first, second):
            shown = OPPOSITE_RELATION[expectation.relation]  # on the axis the prompt cares about
            found.append(FoundDefect("swapped_relation", None, {"shown": shown}))
    return found
