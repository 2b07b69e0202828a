"""The offline teacher: writes initial and improving thinkings from prompt text and measurements.

It stands in for a vision-language teacher. Like one, it reads the prompt and looks at images
(through `analyse`), and never sees the Scene that was rendered nor the defects injected. It reads
the prompt with `parse_prompt`; a prompt outside the grammar is planned from what the image shows.

The improving thinking follows IRGL's four parts inside <think>…</think>: an opening paragraph on
the previous image's shortcomings, then `### Detailed Explanation of Required Improvements:`,
`### Step-by-Step Modification Guidance:` and `### Final Comprehensive Prompt for the Improved
Image:`. It is written as advice on the previous image alone: the better image informs it (what to
fix, where things belong) but is never mentioned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .analyse import DetectedObject, Observation, analyse
from .checker import OPPOSITE_RELATION, Expectation, ExpectedGroup, centroid, check_observation, find_defects
from .defects import DEFECT_KINDS, FoundDefect, match_defects, sample_defects
from .render import render_scene
from .scene import (
    PromptOutsideGrammar,
    Scene,
    background_phrase,
    parse_prompt,
    plural,
    relation_phrase,
    sample_scene,
    scene_to_prompt,
)

HEADER_EXPLANATION = "### Detailed Explanation of Required Improvements:"
HEADER_GUIDANCE = "### Step-by-Step Modification Guidance:"
HEADER_FINAL_PROMPT = "### Final Comprehensive Prompt for the Improved Image:"

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_BACKDROP_DETAILS = {
    "grey studio": "a seamless grey studio sweep, lighter at the top and falling off towards the floor",
    "beige paper": "warm beige paper with a faint fibrous grain",
    "wooden table": "a pale oak tabletop with wavy horizontal grain",
    "white wall": "a matte white wall with a subtle plaster texture",
}
_LIGHTING = (
    "Soft key light from the upper left: each object is brighter on its upper-left side, carries "
    "a small specular highlight and casts a short, soft shadow towards the lower right.",
    "Lighting comes from the upper left, giving every object a lit side, a shaded side, a crisp "
    "highlight and a soft contact shadow down and to the right.",
    "A single soft light from the upper left models the forms: highlights on the upper left, "
    "gentle falloff into shade, and short shadows cast towards the lower right.",
)
_STYLE = (
    "Photographic style, sharp focus throughout, with a fine surface grain on the objects so they "
    "read as real materials.",
    "Clean product-photo look: crisp edges, saturated colours and a fine visible texture on every surface.",
    "Realistic studio rendering with sharp edges, clean saturated colours and fine material texture.",
)
_SHAPE_LOOKS = {
    "ball": "smooth spheres with a rounded highlight",
    "cube": "cubes seen slightly from above, showing a bright top face and a darker right face",
    "pyramid": "pyramids standing on their base, with a lit left face and a shaded right face",
    "ring": "rings shaped like a torus, with an open hole in the middle",
    "star": "five-pointed stars with bevelled, faceted points",
}
_SHAPE_LOOK_ONE = {
    "ball": "a smooth sphere with a rounded highlight",
    "cube": "a cube seen slightly from above, showing a bright top face and a darker right face",
    "pyramid": "a pyramid standing on its base, with a lit left face and a shaded right face",
    "ring": "a ring shaped like a torus, with an open hole in the middle",
    "star": "a five-pointed star with bevelled, faceted points",
}


# --- small phrases ------------------------------------------------------------------------


def number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def group_phrase(count: int, size: str | None, color: str, shape: str, article: bool = False) -> str:
    """'two small red balls', 'one large blue cube' ('a large blue cube' with article), 'no red balls'."""
    noun = shape if count == 1 else plural(shape)
    quantity = "a" if article and count == 1 else number_word(count)
    return " ".join([quantity] + ([size] if size and count else []) + [color, noun])


def place_phrase(point: tuple[float, float]) -> str:
    """Where a point lies in the frame, in words: 'in the upper left', 'in the centre'."""
    x, y = point
    horizontal = "left" if x < 0.4 else "right" if x > 0.6 else ""
    vertical = "upper" if y < 0.4 else "lower" if y > 0.6 else ""
    if horizontal and vertical:
        return f"in the {vertical} {horizontal}"
    if horizontal:
        return f"on the {horizontal} side"
    if vertical:
        return f"in the {vertical} centre"
    return "in the centre"


def _choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _noun(g: ExpectedGroup) -> str:
    return plural(g.shape) if g.count > 1 else g.shape


def _the(g: ExpectedGroup) -> str:
    """'the red balls' / 'the blue cube'."""
    return f"the {g.color} {_noun(g)}"


def _verb(g: ExpectedGroup, plural_form: str, singular_form: str) -> str:
    return plural_form if g.count > 1 else singular_form


def _look(g: ExpectedGroup) -> str:
    return _SHAPE_LOOKS[g.shape] if g.count > 1 else _SHAPE_LOOK_ONE[g.shape]


def _size_words(size: str) -> str:
    return "about a fifth of the frame across" if size == "large" else "about a tenth of the frame across"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _read_prompt(prompt: str, observation: Observation) -> tuple[Expectation, Scene | None, str]:
    """(what the image should show, the parsed scene or None, the backdrop). A prompt outside the
    grammar is read from what `observation` shows instead."""
    try:
        scene = parse_prompt(prompt)
    except PromptOutsideGrammar:
        return Expectation.from_observation(observation), None, observation.background
    return Expectation.from_scene(scene), scene, scene.background


def _describe_observation(observation: Observation) -> str:
    """'three small red balls and one large blue cube' — what an image shows, by (shape, colour)."""
    clusters: dict[tuple[str, str], list[DetectedObject]] = {}
    for obj in observation.objects:
        clusters.setdefault((obj.shape, obj.color), []).append(obj)
    parts = [
        group_phrase(len(objs), Counter(o.size for o in objs).most_common(1)[0][0], color, shape)
        for (shape, color), objs in clusters.items()
    ]
    return _join(parts) if parts else "no distinct coloured objects at all"


def _subject(expectation: Expectation) -> str:
    phrases = [group_phrase(g.count, g.size, g.color, g.shape, article=True) for g in expectation.groups]
    if not phrases:
        return "a clean, uncluttered scene"
    if len(phrases) == 2 and expectation.relation:
        return f"{phrases[0]} {relation_phrase(expectation.relation)} {phrases[1]}"
    return _join(phrases)


def _relation_sides(relation: str) -> tuple[str, str]:
    """The halves of the frame that put group 0 <relation> group 1."""
    return {
        "left of": ("left", "right"),
        "right of": ("right", "left"),
        "above": ("upper", "lower"),
        "below": ("lower", "upper"),
    }[relation]


def _relation_for(index: int, expectation: Expectation) -> str:
    """The relation phrase read from group `index`'s point of view."""
    if index == 0:
        return relation_phrase(expectation.relation)
    return relation_phrase(OPPOSITE_RELATION[expectation.relation])


# --- initial thinking ---------------------------------------------------------------------


def write_initial_thinking(prompt: str, observation: Observation, seed: int) -> str:
    """A plan for the picture the prompt asks for, consistent with the (high-quality) image that
    `observation` measures: objects, counts, colours, sizes, layout, background, light, style.

    Counts and colours come from the prompt when the grammar reads it (the request is the
    authority); placement comes from the image."""
    rng = np.random.default_rng(seed)
    expectation, scene, backdrop = _read_prompt(prompt, observation)
    setting = background_phrase(backdrop)
    if scene is not None:
        lines = [_choose(rng, (
            f"The prompt asks for {_subject(expectation)}, {setting}. Let me plan the picture.",
            f"I need to draw {_subject(expectation)}, {setting}. Here is how I will compose it.",
            f"Request: {_subject(expectation)}, {setting}. Planning the image step by step.",
        ))]
    else:
        lines = [f'The prompt reads "{prompt.strip()}". I will build the picture around concrete, countable '
                 f"objects: {_subject(expectation)}, {setting}."]

    if expectation.groups:
        wanted = "; ".join(f"exactly {group_phrase(g.count, g.size, g.color, g.shape)}" for g in expectation.groups)
        lines.append(f"Objects and counts: {wanted}. Nothing else appears in the frame.")
    else:
        lines.append("Objects and counts: no distinct objects; the backdrop itself is the subject.")
    for g in expectation.groups:
        lines.append(f"The {g.color} {_noun(g)}: {_look(g)}, a clean saturated {g.color}, "
                     f"{g.size} ({_size_words(g.size)}).")
    lines.append(_layout_plan(expectation, observation, rng))
    lines.append(f"Background: {_BACKDROP_DETAILS[backdrop]}, kept plain and low in colour so the objects stand out.")
    lines.append(_choose(rng, _LIGHTING) + " " + _choose(rng, _STYLE))
    return "<think>\n" + "\n".join(lines) + "\n</think>"


def _layout_plan(expectation: Expectation, observation: Observation, rng: np.random.Generator) -> str:
    if expectation.relation and len(expectation.groups) == 2:
        first, second = expectation.groups
        side_a, side_b = _relation_sides(expectation.relation)
        rule = (f"Layout: {_the(first)} {_verb(first, 'occupy', 'occupies')} the {side_a} half of the frame "
                f"and {_the(second)} the {side_b} half, so the first group is clearly "
                f"{relation_phrase(expectation.relation)} the second.")
    elif len(expectation.groups) >= 2:
        rule = "Layout: each group keeps to its own part of the frame, so the groups read separately."
    else:
        rule = "Layout: the objects are spread over the frame with generous spacing."
    places = [f"{_the(g)} {place_phrase(centroid(seen))}"
              for g in expectation.groups if (seen := observation.of(g.shape, g.color))]
    where = f"Placement: {_join(places)}." if places else ""
    spacing = _choose(rng, (
        "Every object stands apart from its neighbours, with clear space between them and none cut off by the frame.",
        "The objects are spaced out so none overlap or touch, and all stay fully inside the frame.",
    ))
    return " ".join(part for part in (rule, where, spacing) if part)


# --- improving thinking -------------------------------------------------------------------


def write_improving_thinking(
    prompt: str,
    initial_thinking: str,
    initial: Observation,
    target: Observation,
    seed: int,
) -> tuple[str, list[FoundDefect]]:
    """Critique the initial image and say how to improve it, in IRGL's four-part format.

    `target` is the measured better image for the same prompt: it tells the teacher which
    departures are real and where things belong, and is never mentioned in the text. Returns the
    thinking and the defects it names (empty when it finds nothing to fix)."""
    if not isinstance(initial_thinking, str):
        raise TypeError("initial_thinking must be a string")
    rng = np.random.default_rng(seed)
    expectation, scene, backdrop = _read_prompt(prompt, target)
    found = _in_fix_order(find_defects(expectation, initial, target))
    request = f"{_subject(expectation)}, {background_phrase(backdrop)}"

    if found:
        opening = _opening(expectation, initial, found, request, bool(initial_thinking.strip()), rng)
        explanations = [_explain(d, expectation, initial, backdrop) for d in found]
        steps = [_keep_step(expectation, found, backdrop)]
        steps += [_step(d, expectation, target, backdrop) for d in found]
    else:
        opening = _choose(rng, (
            f"The previous image already shows {_describe_observation(initial)}, {background_phrase(backdrop)}, "
            "as requested; the content is right, so what remains is refinement of light, texture and crispness.",
            f"Content-wise the previous image is correct: {_describe_observation(initial)}, "
            f"{background_phrase(backdrop)}. It can still gain in rendering quality, with stronger modelling "
            "light and finer surface texture.",
        ))
        explanations = _refinements(expectation, backdrop)
        steps = [
            _keep_step(expectation, found, backdrop),
            "Strengthen the light from the upper left so every object shows a clear lit side, shaded side and highlight.",
            "Sharpen the fine grain on each surface and the texture of the backdrop, keeping edges crisp.",
            "Deepen the soft shadows towards the lower right slightly so the objects sit firmly on the surface.",
        ]
    steps.append(_choose(rng, (
        f"Finally, check the whole frame: {request}, and nothing else.",
        f"Review the result against the request, {request}, with every count, colour and position right.",
    )))

    parts = [
        "<think>",
        opening,
        "",
        HEADER_EXPLANATION,
        *[f"{i}. {text}" for i, text in enumerate(explanations, start=1)],
        "",
        HEADER_GUIDANCE,
        *[f"{i}. {text}" for i, text in enumerate(steps, start=1)],
        "",
        HEADER_FINAL_PROMPT,
        _final_prompt(expectation, scene, target, backdrop, prompt, rng),
        "</think>",
    ]
    return "\n".join(parts), found


# Clear away what does not belong first, then correct, add, arrange, and finish the surfaces.
_FIX_ORDER = ("extra_object", "wrong_color", "wrong_count", "missing_object", "swapped_relation", "lost_detail")


def _in_fix_order(found: list[FoundDefect]) -> list[FoundDefect]:
    return sorted(found, key=lambda d: _FIX_ORDER.index(d.kind))


def _opening(expectation, initial, found, request, had_plan, rng) -> str:
    lead = _choose(rng, (
        "The previous image does not yet match the request.",
        "The previous image falls short of the prompt in important ways.",
        "The previous image only partly follows the plan." if had_plan else "The previous image misses parts of the prompt.",
    ))
    problems = _join([_short(d, expectation) for d in found])
    return (f"{lead} It shows {_describe_observation(initial)}, whereas the prompt asks for {request}. "
            f"The problems: {problems}.")


def _short(d: FoundDefect, expectation: Expectation) -> str:
    if d.kind == "wrong_count":
        g = expectation.groups[d.group]
        return f"{number_word(d.detail['count'])} {g.color} {plural(g.shape)} instead of {number_word(g.count)}"
    if d.kind == "wrong_color":
        g = expectation.groups[d.group]
        return f"the {_noun(g)} {_verb(g, 'are', 'is')} {d.detail['color']} instead of {g.color}"
    if d.kind == "missing_object":
        g = expectation.groups[d.group]
        return f"{_the(g)} {_verb(g, 'are', 'is')} missing"
    if d.kind == "extra_object":
        return f"an unrequested {d.detail['color']} {d.detail['shape']}"
    if d.kind == "swapped_relation":
        return "the two groups sit on the wrong sides of each other"
    return "a flat, blurred rendering without surface detail"


def _explain(d: FoundDefect, expectation: Expectation, initial: Observation, backdrop: str) -> str:
    if d.kind == "wrong_count":
        g = expectation.groups[d.group]
        shown = d.detail["count"]
        change = "one too many" if shown == g.count + 1 else "one too few" if shown == g.count - 1 else "the wrong number"
        return (f"**Count of the {g.color} {plural(g.shape)}.** The image contains "
                f"{group_phrase(shown, g.size, g.color, g.shape)}, {change}. The prompt calls for exactly "
                f"{number_word(g.count)}, so the number must change from {shown} to {g.count}.")
    if d.kind == "wrong_color":
        g = expectation.groups[d.group]
        return (f"**Colour of the {_noun(g)}.** The {_noun(g)} {_verb(g, 'are', 'is')} rendered in "
                f"{d.detail['color']}, a colour the prompt never mentions; {_verb(g, 'they', 'it')} must be a "
                f"saturated {g.color}. Shape, size, count and position are fine.")
    if d.kind == "missing_object":
        g = expectation.groups[d.group]
        return (f"**Missing {g.color} {_noun(g)}.** There is no {g.color} {g.shape} anywhere in the image, yet "
                f"the prompt asks for {group_phrase(g.count, g.size, g.color, g.shape, article=True)}.")
    if d.kind == "extra_object":
        seen = initial.of(d.detail["shape"], d.detail["color"])
        where = place_phrase(centroid(seen)) if seen else "in the frame"
        return (f"**Unrequested object.** A {d.detail['size']} {d.detail['color']} {d.detail['shape']} appears "
                f"{where}. Nothing in the prompt asks for it, and it distracts from the requested objects.")
    if d.kind == "swapped_relation":
        first, second = expectation.groups
        side_a, side_b = _relation_sides(expectation.relation)
        return (f"**Spatial relation.** {_the(first).capitalize()} {_verb(first, 'sit', 'sits')} "
                f"{relation_phrase(d.detail['shown'])} {_the(second)}, but the prompt puts "
                f"{_verb(first, 'them', 'it')} {relation_phrase(expectation.relation)} {_the(second)}. The first "
                f"group belongs in the {side_a} half of the frame and the second in the {side_b} half.")
    return (f"**Detail and sharpness.** The image is soft and flat: every object is one uniform tone with "
            f"no lit or shaded side, no highlight and no surface grain, and the edges and the texture of "
            f"the {backdrop} are blurred. The objects need directional shading, crisp edges and fine texture.")


def _step(d: FoundDefect, expectation: Expectation, target: Observation, backdrop: str) -> str:
    if d.kind == "wrong_count":
        g = expectation.groups[d.group]
        shown, wanted = d.detail["count"], g.count
        if shown > wanted:
            return (f"Remove {number_word(shown - wanted)} of the {g.color} {plural(g.shape)}, leaving exactly "
                    f"{number_word(wanted)}, and fill the gap with the {backdrop}.")
        more = group_phrase(wanted - shown, g.size, g.color, g.shape)
        return (f"Add {more} next to the others, matching their size, shading and spacing, for exactly "
                f"{number_word(wanted)}.")
    if d.kind == "wrong_color":
        g = expectation.groups[d.group]
        return (f"Repaint the {d.detail['color']} {_noun(g)} a saturated {g.color}, keeping "
                f"{_verb(g, 'their', 'its')} shading, highlights and position unchanged.")
    if d.kind == "missing_object":
        g = expectation.groups[d.group]
        return (f"Add {group_phrase(g.count, g.size, g.color, g.shape, article=True)} "
                f"{_where_to_add(d.group, expectation, target)}, lit and shadowed like the rest.")
    if d.kind == "extra_object":
        return f"Remove the {d.detail['color']} {d.detail['shape']} and continue the {backdrop} where it stood."
    if d.kind == "swapped_relation":
        first, second = expectation.groups
        side_a, side_b = _relation_sides(expectation.relation)
        return (f"Swap the two groups: move {_the(first)} to the {side_a} half and {_the(second)} to the "
                f"{side_b} half, keeping counts and spacing.")
    return ("Re-render every object with light from the upper left (a lit side, a shaded side, a specular "
            f"highlight), add fine surface grain, and restore crisp edges and the texture of the {backdrop}.")


def _where_to_add(index: int, expectation: Expectation, target: Observation) -> str:
    """Where a missing group belongs: set by the relation if there is one, else where such objects
    sit in a well-composed version of this picture."""
    if expectation.relation and len(expectation.groups) == 2:
        side = _relation_sides(expectation.relation)[index]
        other = expectation.groups[1 - index]
        return f"in the {side} half of the frame, {_relation_for(index, expectation)} {_the(other)}"
    seen = target.of(expectation.groups[index].shape, expectation.groups[index].color)
    return f"{place_phrase(centroid(seen))}, apart from the other objects" if seen else "in open space"


def _keep_step(expectation: Expectation, found: list[FoundDefect], backdrop: str) -> str:
    if any(d.kind == "swapped_relation" for d in found):
        kept = []  # both groups move
    else:
        touched = {d.group for d in found if d.group is not None}
        kept = [_the(g) for i, g in enumerate(expectation.groups) if i not in touched]
    keep = f"{_join(kept)} unchanged, along with " if kept else ""
    return f"Keep {keep}the {backdrop}, the camera framing and the overall composition."


def _refinements(expectation: Expectation, backdrop: str) -> list[str]:
    nouns = _join([f"{g.color} {_noun(g)}" for g in expectation.groups]) if expectation.groups else "objects"
    return [
        f"**Lighting.** The {nouns} are correct but can be modelled more strongly: a clearer lit side from the "
        "upper left, a darker shaded side and a crisp specular highlight give them more volume.",
        f"**Texture.** A fine, even grain on every surface and a clearly visible texture in the {backdrop} make "
        "the materials read as real.",
        "**Grounding.** Soft contact shadows falling to the lower right anchor the objects to the surface.",
    ]


def _final_prompt(expectation, scene, target, backdrop, prompt, rng) -> str:
    if scene is not None:
        head = scene_to_prompt(scene)
    else:
        head = f"{prompt.strip().rstrip('.')}: {_subject(expectation)}, {background_phrase(backdrop)}"
    details = []
    for g in expectation.groups:
        seen = target.of(g.shape, g.color)
        where = f", {place_phrase(centroid(seen))}" if seen else ""
        details.append(f"The {g.color} {_noun(g)}{where}: {_look(g)}, saturated {g.color}, {g.size}.")
    if expectation.groups:
        details.append("Each object stands apart with clear space around it, fully inside the frame, and no other objects appear.")
    details.append(f"The backdrop is {_BACKDROP_DETAILS[backdrop]}.")
    details.append(_choose(rng, _LIGHTING) + " " + _choose(rng, _STYLE))
    return head[0].upper() + head[1:] + ". " + " ".join(details)


# --- measuring the teacher ----------------------------------------------------------------


@dataclass(frozen=True)
class DefectNamingReport:
    samples: int
    size: int
    true_positives: int
    found: int
    injected: int
    per_kind: dict  # kind -> (true positives, found, injected)
    initial_accuracy: float
    better_accuracy: float

    @property
    def precision(self) -> float:
        return self.true_positives / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.injected if self.injected else 1.0


def evaluate_defect_naming(samples: int, size: int, rate: float = 0.7, seed: int = 0) -> DefectNamingReport:
    """Render `samples` seeded scenes twice — a clean high-quality image and a base-model image with
    sampled defects — have the teacher write both thinkings, and score the defects it names against
    those injected (`match_defects`), plus GenEval-style accuracy of both images."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(3, dtype=int)
    per_kind = {kind: np.zeros(3, dtype=int) for kind in DEFECT_KINDS}
    accuracy = np.zeros(2)
    for i in range(samples):
        scene = sample_scene(rng)
        defects = sample_defects(scene, rng, rate)
        prompt = scene_to_prompt(scene)
        better = analyse(render_scene(scene, size, seed=2 * i))
        initial = analyse(render_scene(scene, size, seed=2 * i + 1, defects=defects))
        plan = write_initial_thinking(prompt, better, seed=i)
        _, found = write_improving_thinking(prompt, plan, initial, better, seed=i)
        totals += match_defects(found, defects)
        for kind in DEFECT_KINDS:
            per_kind[kind] += match_defects([d for d in found if d.kind == kind], [d for d in defects if d.kind == kind])
        accuracy += (check_observation(initial, scene).accuracy, check_observation(better, scene).accuracy)
    return DefectNamingReport(
        samples=samples,
        size=size,
        true_positives=int(totals[0]),
        found=int(totals[1]),
        injected=int(totals[2]),
        per_kind={kind: tuple(int(v) for v in counts) for kind, counts in per_kind.items()},
        initial_accuracy=float(accuracy[0] / samples),
        better_accuracy=float(accuracy[1] / samples),
    )
