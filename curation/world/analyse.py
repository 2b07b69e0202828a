"""Measure an image with no knowledge of the scene behind it: the offline world's "eyes".

Objects are the connected components of high-chroma pixels (every background is low in chroma).
Each is named by its mean hue (colour), by its geometry (shape: a hole → ring; non-convex → star;
bottom-heavy → pyramid; fills its box's corners → cube; else ball) and by its box side (size).
Detail is the fine-scale luminance energy relative to brightness, read inside objects (shading,
highlights and grain) and on the backdrop (paper, wood, plaster); flat shading plus blur remove it.
Reliable from 128 px up; below that, small objects are a handful of pixels and shapes blur together.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .scene import BACKGROUNDS, COLORS

# Chroma (max - min channel, 0..1) above which a pixel belongs to an object. Backgrounds stay
# below ~0.17 and object surfaces above ~0.28 even in shade.
CHROMA_THRESHOLD = 0.2
# Box side (fraction of the image side) between the renderer's small (0.11) and large (0.18).
SIZE_THRESHOLD = 0.145
# A component smaller than this fraction of the image is noise, not an object.
MIN_AREA_FRACTION = 0.0012
# Holes smaller than this fraction of the filled silhouette are specks (a highlight), not a ring's hole.
RING_HOLE_FRACTION = 0.08
# Geometry thresholds: star solidity is ~0.56 (vs ~0.9+ for convex shapes); a triangle standing
# on its base holds ~0.45 more of its area in the lower half of its box than in the upper; the
# cube's hexagon fills two corners of its box, a disc fills ~0.35 of each.
STAR_SOLIDITY = 0.79
PYRAMID_BOTTOM_WEIGHT = 0.25
CUBE_CORNER_FILL = 0.75


@dataclass(frozen=True)
class DetectedObject:
    shape: str
    color: str
    size: str
    centroid: tuple[float, float]  # (x, y), fractions of width and height
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions
    area: float  # fraction of the image
    fill: float  # area / box area
    solidity: float  # area / convex-hull area
    hole: float  # hole area / filled area
    bottom_weight: float  # (lower-half area - upper-half area) / area
    corner_fill: float  # fullest corner of the box
    detail: float  # median fine-scale energy inside the object, percent of brightness

    def to_json(self) -> dict:
        return asdict(self) | {"centroid": list(self.centroid), "bbox": list(self.bbox)}

    @classmethod
    def from_json(cls, data: dict) -> DetectedObject:
        return cls(**(data | {"centroid": tuple(data["centroid"]), "bbox": tuple(data["bbox"])}))


@dataclass(frozen=True)
class Observation:
    width: int
    height: int
    background: str  # nearest named backdrop
    background_rgb: tuple[int, int, int]
    objects: tuple[DetectedObject, ...]  # in reading order (top to bottom, then left to right)
    detail: float  # surface detail: median fine-scale luminance energy inside objects (0 if none)
    background_detail: float  # the same measure on the backdrop (paper fibre, wood grain, plaster)

    def counts(self) -> dict[tuple[str, str], int]:
        """Objects per (shape, colour)."""
        return dict(Counter((o.shape, o.color) for o in self.objects))

    def of(self, shape: str, color: str) -> tuple[DetectedObject, ...]:
        return tuple(o for o in self.objects if o.shape == shape and o.color == color)

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "background": self.background,
            "background_rgb": list(self.background_rgb),
            "objects": [o.to_json() for o in self.objects],
            "detail": self.detail,
            "background_detail": self.background_detail,
        }

    @classmethod
    def from_json(cls, data: dict) -> Observation:
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            background=data["background"],
            background_rgb=tuple(data["background_rgb"]),
            objects=tuple(DetectedObject.from_json(o) for o in data["objects"]),
            detail=float(data["detail"]),
            background_detail=float(data["background_detail"]),
        )


def analyse(image: Image.Image) -> Observation:
    """Segment and measure `image` (any PIL mode; converted to RGB)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    height, width = rgb.shape[:2]
    # Channel planes, not reductions over the last axis: several times faster on (H, W, 3).
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    mask = chroma > CHROMA_THRESHOLD
    labels, n_labels = ndimage.label(mask, structure=np.ones((3, 3)))

    scale = max(1.0, min(height, width) / 256)  # features sized in "1/256 of the image" units
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    high_pass = luminance - ndimage.gaussian_filter(luminance, scale, truncate=3.0)
    # Relative fine-scale energy: grain and face edges score high, flat or blurred surfaces near 0.
    relative_energy = np.abs(high_pass) / np.maximum(luminance, 1e-3)

    areas, hues = _areas_and_hues(rgb, chroma, labels, mask, n_labels)
    min_area = max(6.0, MIN_AREA_FRACTION * height * width)
    objects, interiors = [], []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if areas[label] < min_area:
            continue
        component = labels[box] == label
        detected, interior = _measure(
            component, box, hues[label], chroma[box], relative_energy[box], width, height, scale
        )
        objects.append(detected)
        interiors.append(relative_energy[box][interior])
    objects.sort(key=lambda o: (round(o.centroid[1], 2), o.centroid[0]))

    away = ~ndimage.binary_dilation(mask, iterations=max(3, round(3 * scale)))
    # Backdrop statistics from a subsample: medians of ~16k pixels say as much as of a million.
    step = max(1, min(height, width) // 128)
    sample = away[::step, ::step]
    if not sample.any():  # objects everywhere: fall back to whatever is not an object, then to all
        sample = ~mask[::step, ::step]
    if not sample.any():
        sample = np.ones_like(sample)
    name, background_rgb = _background(rgb[::step, ::step][sample])
    return Observation(
        width=width,
        height=height,
        background=name,
        background_rgb=background_rgb,
        objects=tuple(objects),
        detail=_median_percent(np.concatenate(interiors)) if interiors else 0.0,
        background_detail=_median_percent(relative_energy[::step, ::step][sample]),
    )


def _areas_and_hues(rgb, chroma, labels, mask, n_labels):
    """Pixel count and mean hue (degrees) per label. The hue is a chroma-weighted circular mean,
    so faint edge and highlight pixels count for little."""
    index = labels[mask]
    pixels = rgb[mask]
    weight = chroma[mask]
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    # atan2 form of the HSV hue angle: exact for the pure hues, monotone in between.
    angle = np.arctan2(np.float32(math.sqrt(3)) * (g - b), 2 * r - g - b)
    sum_x = np.bincount(index, weights=weight * np.cos(angle), minlength=n_labels + 1)
    sum_y = np.bincount(index, weights=weight * np.sin(angle), minlength=n_labels + 1)
    areas = np.bincount(index, minlength=n_labels + 1)
    hues = np.degrees(np.arctan2(sum_y, sum_x)) % 360
    return areas, hues


def _median_percent(values: np.ndarray) -> float:
    return round(float(np.median(values)) * 100, 4)


def _hue_of(rgb: tuple[int, int, int]) -> float:
    r, g, b = (c / 255 for c in rgb)
    return math.degrees(math.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)) % 360


COLOR_HUES = {name: _hue_of(rgb) for name, rgb in COLORS.items()}


def nearest_color(hue: float) -> str:
    return min(COLOR_HUES, key=lambda name: abs((hue - COLOR_HUES[name] + 180) % 360 - 180))


def _measure(component, box, hue, chroma, relative_energy, width, height, scale):
    """One component's DetectedObject, and the interior mask its detail was measured on."""
    # Geometry comes from the half-strength core: the pixels at least half as colourful as the
    # object's median. That is where an edge lies whether or not the image was blurred; the
    # outer mask swells under blur and fills a star's notches or a ring's hole.
    core = component & (chroma >= 0.5 * np.median(chroma[component]))
    rows, cols = np.nonzero(core)  # never empty: at least half the pixels reach the median
    core = core[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    y0, x0 = box[0].start + rows.min(), box[1].start + cols.min()

    filled = ndimage.binary_fill_holes(core)
    hole = float((filled.sum() - core.sum()) / filled.sum())
    if hole < RING_HOLE_FRACTION:
        core = filled  # a speck of highlight is not a hole
    box_h, box_w = core.shape
    area = float(core.sum())
    fill = area / (box_h * box_w)
    solidity = _solidity(core)
    bottom_weight = _bottom_weight(core)
    corner_fill = _corner_fill(core)
    ys, xs = np.nonzero(core)

    # Detail is read away from the outline, where blur and anti-aliasing would pass for texture.
    interior = ndimage.binary_erosion(component, iterations=max(1, round(2 * scale)))
    if interior.sum() < 4:
        interior = component
    detected = DetectedObject(
        shape=_classify(hole, solidity, bottom_weight, corner_fill),
        color=nearest_color(hue),
        size="large" if max(box_w / width, box_h / height) > SIZE_THRESHOLD else "small",
        centroid=(float(x0 + xs.mean() + 0.5) / width, float(y0 + ys.mean() + 0.5) / height),
        bbox=(int(x0) / width, int(y0) / height, int(x0 + box_w) / width, int(y0 + box_h) / height),
        area=area / (width * height),
        fill=round(fill, 4),
        solidity=round(solidity, 4),
        hole=round(hole, 4),
        bottom_weight=round(bottom_weight, 4),
        corner_fill=round(corner_fill, 4),
        detail=_median_percent(relative_energy[interior]),
    )
    return detected, interior


def _solidity(component: np.ndarray) -> float:
    """Area over the convex hull of the pixel squares (corners, so tiny shapes are not penalised)."""
    edge = component & ~ndimage.binary_erosion(component)
    ys, xs = np.nonzero(edge)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners).volume
    except QhullError:  # a line of pixels: degenerate hull, and certainly convex
        return 1.0
    return float(component.sum() / hull_area)


def _classify(hole: float, solidity: float, bottom_weight: float, corner_fill: float) -> str:
    if hole >= RING_HOLE_FRACTION:
        return "ring"
    if solidity < STAR_SOLIDITY:
        return "star"
    if bottom_weight > PYRAMID_BOTTOM_WEIGHT:
        return "pyramid"
    if corner_fill > CUBE_CORNER_FILL:
        return "cube"
    return "ball"


def _background(pixels: np.ndarray) -> tuple[str, tuple[int, int, int]]:
    """Median colour of backdrop pixels, named by the nearest backdrop."""
    median = np.median(pixels, axis=0) * 255
    name = min(BACKGROUNDS, key=lambda n: float(np.sum((median - BACKGROUNDS[n]) ** 2)))
    return name, tuple(int(round(v)) for v in median)


def _bottom_weight(component: np.ndarray) -> float:
    """(area in the lower half of the box - area in the upper half) / area: ~0.5 for a triangle
    standing on its base, ~0 for symmetric shapes."""
    h = component.shape[0]
    rows = component.sum(axis=1).astype(float)
    centres = (np.arange(h) + 0.5) / h
    lower = rows[centres > 0.5].sum() + 0.5 * rows[centres == 0.5].sum()
    upper = rows[centres < 0.5].sum() + 0.5 * rows[centres == 0.5].sum()
    return float((lower - upper) / rows.sum())


def _corner_fill(component: np.ndarray) -> float:
    """Fullest of the four corner quarters-of-a-quarter of the box: a cube's hexagon fills two of
    them, a disc none."""
    h, w = component.shape
    ch, cw = max(1, round(h / 4)), max(1, round(w / 4))
    corners = (component[:ch, :cw], component[:ch, -cw:], component[-ch:, :cw], component[-ch:, -cw:])
    return float(max(c.mean() for c in corners))
