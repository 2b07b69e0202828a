"""Deterministic renderer of scenes: a stand-in for a text-to-image model.

Layout lives in normalised coordinates and is drawn from `seed` before anything that depends on
the pixel size, so one seed gives the same composition at every resolution. Objects are drawn
from signed distance fields (anti-aliased edges), lit from the upper left, with face shading,
specular highlights and a fine surface grain: that grain and shading are the "detail" that the
lost_detail defect removes and that `analyse` measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .defects import Defect, DrawPlan, apply_defects
from .scene import BACKGROUNDS, COLORS, Scene

MIN_SIZE, MAX_SIZE = 64, 1024

# Bounding-box side of an object as a fraction of the image side. The analyser's size threshold
# sits between the two (see analyse.SIZE_THRESHOLD).
NOMINAL_DIAMETER = {"small": 0.11, "large": 0.18}
DIAMETER_JITTER = 0.03
# Free space kept between neighbouring objects and around the image border, so that objects
# never touch, even after the lost_detail blur.
OBJECT_GAP = 0.03
BORDER = 0.03
# Half the empty corridor between the two groups' halves of the image.
HALF_GAP = 0.03

# Plain floats, not numpy scalars: a float64 scalar would promote every float32 field to float64.
LIGHT = tuple(float(v) for v in np.array([-0.45, -0.6, 0.66]) / np.linalg.norm([-0.45, -0.6, 0.66]))
HALF_VECTOR = tuple(float(v) for v in (np.array(LIGHT) + [0, 0, 1]) / np.linalg.norm(np.array(LIGHT) + [0, 0, 1]))
AMBIENT = 0.5
GRAIN_AMPLITUDE = 0.05
FLAT_SHADE = 0.82


class InvalidRenderSize(ValueError):
    """The requested image side is outside MIN_SIZE..MAX_SIZE."""


@dataclass(frozen=True)
class PlacedObject:
    """One object of the layout, in normalised image coordinates (x right, y down)."""

    shape: str
    color: str
    size: str
    cx: float
    cy: float
    diameter: float
    slot: int | None


def render_scene(scene: Scene, size: int, seed: int, defects: Sequence[Defect] = ()) -> Image.Image:
    """Render `scene` (with the base model's `defects`, if any) as a size×size RGB image."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidRenderSize(f"size must be an int in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    size = int(size)
    plan = apply_defects(scene, defects)
    rng = np.random.default_rng(seed)
    layout = plan_layout(plan, scene.relation, rng)
    canvas = _background(scene.background, size, rng)
    grain = _grain(size, rng)
    for obj in layout:
        _draw_shadow(canvas, obj, size)
    for obj in layout:
        _draw_object(canvas, obj, size, grain, flat=plan.flat)
    if plan.flat:
        # The same blur relative to the picture at every resolution (never below a visible 0.6 px).
        sigma = max(0.6, size / 200)
        canvas = ndimage.gaussian_filter(canvas, sigma=(sigma, sigma, 0), mode="nearest")
    # Through int16: numpy's direct float32 → uint8 cast is several times slower.
    pixels = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.int16).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


# --- layout -------------------------------------------------------------------------------


def plan_layout(plan: DrawPlan, relation: str | None, rng: np.random.Generator) -> tuple[PlacedObject, ...]:
    """Place every drawn object in a region of its own group, on a jittered grid, never overlapping."""
    slots = list(range(plan.n_slots))
    regions = _regions(len(slots), relation, plan.swapped, rng)
    region_of = dict(zip(slots, regions))
    members: dict[int, list] = {slot: [] for slot in slots}
    for group in plan.groups:
        if group.slot is not None:
            members[group.slot].extend([group] * group.count)
    for group in plan.groups:
        if group.slot is None:
            # An extra object joins the emptiest region (a missing group's region counts as empty).
            fewest = min(len(m) for m in members.values())
            candidates = [s for s in slots if len(members[s]) == fewest]
            members[candidates[int(rng.integers(len(candidates)))]].append(group)

    placed = []
    for slot in slots:
        placed.extend(_place_in_region(members[slot], region_of[slot], rng))
    return tuple(placed)


def _regions(n_slots: int, relation: str | None, swapped: bool, rng: np.random.Generator):
    full = (BORDER, BORDER, 1 - BORDER, 1 - BORDER)
    if n_slots == 1:
        return [full]
    left = (BORDER, BORDER, 0.5 - HALF_GAP, 1 - BORDER)
    right = (0.5 + HALF_GAP, BORDER, 1 - BORDER, 1 - BORDER)
    top = (BORDER, BORDER, 1 - BORDER, 0.5 - HALF_GAP)
    bottom = (BORDER, 0.5 + HALF_GAP, 1 - BORDER, 1 - BORDER)
    sides = {"left of": [left, right], "right of": [right, left], "above": [top, bottom], "below": [bottom, top]}
    if relation is None:
        # Without a relation the two groups still get a half each, in a random arrangement.
        pairs = [[left, right], [right, left], [top, bottom], [bottom, top]]
        pair = pairs[int(rng.integers(len(pairs)))]
    else:
        pair = sides[relation]
    return pair[::-1] if swapped else pair


def _place_in_region(objects: list, region, rng: np.random.Generator) -> list[PlacedObject]:
    if not objects:
        return []
    x0, y0, x1, y1 = region
    width, height = x1 - x0, y1 - y0
    n = len(objects)
    # The grid whose cells are the largest squares that hold n objects.
    cols = max(range(1, n + 1), key=lambda c: (min(width / c, height / -(-n // c)), -c))
    rows = -(-n // cols)
    cell_w, cell_h = width / cols, height / rows
    cells = rng.permutation(cols * rows)[:n]
    placed = []
    for obj, cell in zip(objects, cells):
        diameter = NOMINAL_DIAMETER[obj.size] * (1 + rng.uniform(-DIAMETER_JITTER, DIAMETER_JITTER))
        slack_x = max(0.0, cell_w - diameter - OBJECT_GAP)
        slack_y = max(0.0, cell_h - diameter - OBJECT_GAP)
        col, row = divmod(int(cell), rows)
        cx = x0 + col * cell_w + (cell_w - slack_x) / 2 + rng.uniform(0, slack_x)
        cy = y0 + row * cell_h + (cell_h - slack_y) / 2 + rng.uniform(0, slack_y)
        placed.append(PlacedObject(obj.shape, obj.color, obj.size, float(cx), float(cy), float(diameter), obj.slot))
    return placed


# --- background ---------------------------------------------------------------------------


def _background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A low-chroma backdrop: brightness varies (gradient, grain, wood bands) but hue barely does,
    so no background pixel reaches an object's chroma."""
    base = np.array(BACKGROUNDS[name], dtype=np.float32) / 255
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    ys, xs = axis[:, None], axis[None, :]
    fine = _unit_noise(rng, (size, size))
    if name == "grey studio":
        # A sweep lit from above, darker towards the floor and the corners.
        light = 1.1 - 0.22 * ys - 0.12 * ((xs - 0.5) ** 2 + (ys - 0.4) ** 2) + 0.01 * fine
    elif name == "beige paper":
        fibres = ndimage.uniform_filter1d(fine, size=max(3, size // 40), axis=1)
        light = 1.0 + 0.02 * fine + 0.05 * fibres - 0.03 * ys
    elif name == "wooden table":
        phase = rng.uniform(0, 2 * math.pi)
        warp = (0.05 * np.sin(2 * math.pi * 1.3 * xs + phase)).astype(np.float32)
        bands = np.sin(2 * math.pi * 9 * (ys + warp)) + 0.5 * np.sin(2 * math.pi * 23 * (ys + 0.6 * warp) + phase)
        streaks = ndimage.uniform_filter1d(fine, size=max(3, size // 20), axis=1)
        light = 1.0 + 0.045 * bands + 0.08 * streaks + 0.015 * fine
    else:  # white wall
        light = 1.0 - 0.06 * xs - 0.02 * ys + 0.012 * fine
    return np.clip(np.broadcast_to(light, (size, size))[..., None] * base, 0, 1).astype(np.float32)


def _grain(size: int, rng: np.random.Generator) -> np.ndarray:
    """Surface grain at a fixed physical scale (one grain per 1/256 of the image side)."""
    cell = max(1, round(size / 256))
    coarse = _unit_noise(rng, (-(-size // cell), -(-size // cell)))
    return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:size, :size]


def _unit_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Zero-mean, unit-variance uniform noise: looks like grain and is 3x cheaper than normals."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(np.sqrt(12))


# --- objects ------------------------------------------------------------------------------


def _local_grid(obj: PlacedObject, size: int, pad: float):
    """Pixel-centre coordinates relative to the object centre over its padded bounding box."""
    cx, cy, half = obj.cx * size, obj.cy * size, obj.diameter * size * pad / 2
    x_lo, x_hi = max(0, int(np.floor(cx - half))), min(size, int(np.ceil(cx + half)) + 1)
    y_lo, y_hi = max(0, int(np.floor(cy - half))), min(size, int(np.ceil(cy + half)) + 1)
    ys, xs = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
    return (slice(y_lo, y_hi), slice(x_lo, x_hi)), xs + 0.5 - cx, ys + 0.5 - cy


def _draw_shadow(canvas: np.ndarray, obj: PlacedObject, size: int) -> None:
    window, x, y = _local_grid(obj, size, pad=1.6)
    d = obj.diameter * size
    q = ((x - 0.12 * d) / (0.55 * d)) ** 2 + ((y - 0.42 * d) / (0.2 * d)) ** 2
    canvas[window] *= (1 - 0.3 * np.exp(-2 * q))[..., None]


def _draw_object(canvas: np.ndarray, obj: PlacedObject, size: int, grain: np.ndarray, flat: bool) -> None:
    window, x, y = _local_grid(obj, size, pad=1.1)
    d = obj.diameter * size
    sdf, shade, highlight = SHAPE_FIELDS[obj.shape](x, y, d)
    coverage = np.clip(0.5 - sdf, 0, 1)[..., None]
    colour = np.array(COLORS[obj.color], dtype=np.float32) / 255
    if flat:
        surface = np.broadcast_to(colour * FLAT_SHADE, coverage.shape[:2] + (3,))
    else:
        texture = 1 + GRAIN_AMPLITUDE * grain[window]
        surface = colour * (shade * texture)[..., None]
        surface = surface + (1 - surface) * highlight[..., None]
    canvas[window] = canvas[window] * (1 - coverage) + np.clip(surface, 0, 1) * coverage


def _lambert(nx, ny, nz):
    """Diffuse shade and specular highlight for a unit normal field."""
    diffuse = np.maximum(0, nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2])
    specular = np.maximum(0, nx * HALF_VECTOR[0] + ny * HALF_VECTOR[1] + nz * HALF_VECTOR[2]) ** 40
    return AMBIENT + (1 - AMBIENT) * diffuse, 0.45 * specular


def _ball(x, y, d):
    radius = d / 2
    rho = np.sqrt(x * x + y * y)
    nx, ny = x / radius, y / radius
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
    shade, highlight = _lambert(nx, ny, nz)
    return rho - radius, shade, highlight


def _ring(x, y, d):
    outer, inner = d / 2, 0.52 * d / 2
    mid, half_width = (outer + inner) / 2, (outer - inner) / 2
    rho = np.sqrt(x * x + y * y) + 1e-6
    # Across the tube the surface bends like a torus: t runs -1 (inner edge) .. 1 (outer edge).
    t = np.clip((rho - mid) / half_width, -1, 1)
    shade, highlight = _lambert(t * x / rho, t * y / rho, np.sqrt(1 - t * t))
    return np.abs(rho - mid) - half_width, shade, highlight


def _cube(x, y, d):
    side, depth = d / 1.3, 0.3 * d / 1.3
    x0, y0 = -d / 2, -d / 2
    silhouette = np.array([
        (x0, y0 + depth), (x0 + depth, y0), (x0 + side + depth, y0),
        (x0 + side + depth, y0 + side), (x0 + side, y0 + side + depth), (x0, y0 + side + depth),
    ])
    front = (x <= x0 + side) & (y >= y0 + depth)
    top = ~front & ((x - x0 - side) + (y - y0 - depth) < 0)
    # Faces: the top catches the light, the right side is in shade; a soft gradient on each.
    shade = np.where(front, 0.8 - 0.12 * (y - y0) / d, np.where(top, 1.0, 0.6 + 0.08 * (y - y0) / d))
    edge = np.exp(-(((y - y0 - depth) / (0.035 * d)) ** 2)) * front
    return _polygon_sdf(x, y, silhouette), shade, 0.3 * edge


def _pyramid(x, y, d):
    height = 0.88 * d
    apex = (0.0, -height / 2)
    base_left, base_right = (-d / 2, height / 2), (d / 2, height / 2)
    ridge_foot = (-d / 2 + 0.62 * d, height / 2)
    # Left of the ridge (apex → ridge foot) is the lit face; right of it the shaded one.
    side = (ridge_foot[0] - apex[0]) * (y - apex[1]) - (ridge_foot[1] - apex[1]) * (x - apex[0])
    lit = side > 0
    depth = (y + height / 2) / height
    shade = np.where(lit, 0.98 - 0.15 * depth, 0.62 - 0.08 * depth)
    ridge_distance = np.abs(side) / np.hypot(ridge_foot[0] - apex[0], ridge_foot[1] - apex[1])
    highlight = 0.3 * np.exp(-((ridge_distance / (0.03 * d)) ** 2))
    sdf = _polygon_sdf(x, y, np.array([apex, base_right, base_left]))
    return sdf, shade, highlight


def _star(x, y, d):
    outer = d / (2 * np.sin(math.radians(72)))
    inner = 0.45 * outer
    angles = np.radians(-90 + 36 * np.arange(10))
    radii = np.where(np.arange(10) % 2 == 0, outer, inner)
    verts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    # Centre the star's bounding box on the object centre (its points reach further up than down).
    offset_y = (verts[:, 1].max() + verts[:, 1].min()) / 2
    verts[:, 1] -= offset_y
    ys = y + offset_y
    # Each spike is two bevelled facets tilted away from its axis: a carved, faceted star.
    theta = np.arctan2(ys, x)
    spike = np.round((theta + math.pi / 2) / math.radians(72)) * math.radians(72) - math.pi / 2
    # theta lies in [-pi, pi], so the nearest spike is never more than 36 degrees away: no wrap.
    side = np.sign(theta - spike)
    nx = 0.55 * side * -np.sin(spike) + 0.25 * np.cos(spike)
    ny = 0.55 * side * np.cos(spike) + 0.25 * np.sin(spike)
    norm = np.sqrt(nx * nx + ny * ny + 1)
    shade, highlight = _lambert(nx / norm, ny / norm, 1 / norm)
    return _polygon_sdf(x, y, verts), shade, highlight


def _polygon_sdf(x, y, verts: np.ndarray):
    """Signed distance (negative inside) from pixel centres to a closed polygon."""
    dist2 = np.full(x.shape, np.inf, dtype=np.float32)
    inside = np.zeros(x.shape, dtype=bool)
    for i in range(len(verts)):
        (ax, ay), (bx, by) = map(float, verts[i]), map(float, verts[i - 1])
        ex, ey = bx - ax, by - ay
        wx, wy = x - ax, y - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        dist2 = np.minimum(dist2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        if ay != by:
            crosses = (ay > y) != (by > y)
            x_cross = ax + ex * (y - ay) / ey
            inside ^= crosses & (x < x_cross)
    return np.where(inside, -np.sqrt(dist2), np.sqrt(dist2))


SHAPE_FIELDS = {"ball": _ball, "cube": _cube, "pyramid": _pyramid, "ring": _ring, "star": _star}
