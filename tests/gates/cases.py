"""Source rows for the gate tests: one per bad kind, one per image that must be normalised, good rows.

Every source test mixes these into the data it writes, so each source is checked against the same
list of exact reasons. A `Case` is one row: its prompt, its image bytes (or None), and what the
gates must do with it: `reason` for a reject, else admit it (with `conversions` recorded, or the
bytes kept exactly as they are when there are none).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    prompt: object
    image: bytes | None
    reason: str | None = None  # None: the gates admit the row
    conversions: tuple[str, ...] = ()  # for admitted rows: what the gates must record
    stored_size: tuple[int, int] | None = None  # for admitted rows whose stored size differs from the source


def distinct_image(seed: int, size: tuple[int, int] = (320, 288)) -> Image.Image:
    """A smooth random colour field: perceptual hashes of two seeds are ~32 of 64 bits apart."""
    rng = np.random.default_rng([1234, seed])
    small = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8), "RGB")
    return small.resize(size, Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    if fmt == "PNG":
        kwargs.setdefault("compress_level", 1)  # fast: these files only need to be valid
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_16bit_rgb(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint16) * 257
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return _png(image.width, image.height, 16, 2, zlib.compress(raw))


def exif_rotated_jpeg(image: Image.Image, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=92, exif=exif)


def bomb_png(side: int = 11000) -> bytes:
    """A few hundred bytes claiming side x side grey pixels (121M at 11000), only the first rows
    present: the gates must refuse it from its header, before decoding anything."""
    return _png(side, side, 8, 0, zlib.compress(bytes(side + 1) * 4))


def gate_cases(first_seed: int = 0) -> list[Case]:
    """Good rows first (later rows repeat them), then one row per bad kind and per normalisation."""
    return list(_gate_cases(first_seed))


@functools.cache
def _gate_cases(first_seed: int) -> tuple[Case, ...]:
    s = first_seed
    good_png = encode(distinct_image(s))
    good_jpeg = encode(distinct_image(s + 1), "JPEG", quality=90)
    return (
        Case("good_png", "a red ball on a wooden table", good_png),
        Case("good_jpeg", "a blue cube against a white wall", good_jpeg),
        # --- bad prompts
        Case("prompt_empty", "  \n ", encode(distinct_image(s + 2)), reason="prompt_empty"),
        Case("prompt_too_long", "a cat " * 400, encode(distinct_image(s + 3)), reason="prompt_too_long"),
        Case("prompt_control_chars", "a dog\x00 in the snow", encode(distinct_image(s + 4)), reason="prompt_not_text"),
        Case("prompt_replacement_char", "caf\ufffd terrace at night", encode(distinct_image(s + 5)),
             reason="prompt_not_text"),
        Case("prompt_duplicate", "A RED  ball on a wooden table ", encode(distinct_image(s + 6)),
             reason="prompt_duplicate"),
        # --- bad images
        Case("image_undecodable", "a green pyramid", b"this is not an image at all", reason="image_undecodable"),
        Case("image_truncated", "a yellow star", encode(distinct_image(s + 7))[:2000], reason="image_truncated"),
        Case("image_bomb", "a purple ring", bomb_png(), reason="image_decompression_bomb"),
        Case("image_bomb_beyond_pillow", "a purple star", bomb_png(20000), reason="image_decompression_bomb"),
        Case("image_too_small", "a pink ball", encode(distinct_image(s + 8, (120, 90))), reason="image_too_small"),
        Case("image_aspect_ratio", "a teal banner", encode(distinct_image(s + 9, (1300, 260))),
             reason="image_aspect_ratio"),
        Case("image_duplicate", "an orange cube in a grey studio", good_png, reason="image_duplicate"),
        Case("image_near_duplicate", "two blue cubes on beige paper",
             encode(distinct_image(s), "JPEG", quality=85), reason="image_near_duplicate"),
        # --- images the gates normalise and keep
        Case("palette", "a palette picture of a lake", encode(distinct_image(s + 10).convert("P")),
             conversions=("mode P -> RGB",)),
        Case("rgba", "a translucent glass on a table", encode(distinct_image(s + 11).convert("RGBA")),
             conversions=("mode RGBA -> RGB (alpha on white)",)),
        Case("cmyk", "a printed poster of a city", encode(distinct_image(s + 12).convert("CMYK"), "JPEG", quality=92),
             conversions=("mode CMYK -> RGB",)),
        Case("grey_16bit", "a grey x-ray of a hand",
             encode(Image.fromarray((np.asarray(distinct_image(s + 13).convert("L"), np.uint16) * 257))),
             conversions=("16-bit -> 8-bit", "mode I;16 -> RGB")),
        Case("rgb_16bit", "a high bit depth sunset", png_16bit_rgb(distinct_image(s + 14)),
             conversions=("16-bit -> 8-bit",)),
        Case("exif_rotated", "a portrait photo of a tree", exif_rotated_jpeg(distinct_image(s + 15)),
             conversions=("EXIF orientation 6 applied",), stored_size=(288, 320)),
        Case("oversized", "a wide mountain panorama", encode(distinct_image(s + 16, (1500, 1200))),
             conversions=("resized 1500x1200 -> 1024x819",), stored_size=(1024, 819)),
        Case("gif", "an animated looking sticker", encode(distinct_image(s + 17).convert("P"), "GIF"),
             conversions=("mode P -> RGB", "format gif -> png")),
    )
