"""Gates: checks on each source row before any model is called.

They turn a `SourceItem` into a `Sample` (with its `reject` set when a check fails, one of the
named reasons in `core/reasons.py`). Duplicates follow one rule over the whole run
(`pipeline/dedup.py`): among rows that passed the other checks, a row is a duplicate when a row
with the same prompt, the same image bytes or a near image ranks above it (more pixels, lossless
over lossy, the higher preference score where measured, more bytes, the smaller sample id); the best
such row is named. While rows stream in, a row already certain to lose is turned away here (its
model stages are skipped); the end-of-run pass over every row's keys decides the rest and which
original each names, so the result depends neither on the order rows arrive in nor on sharding.

Image policy. A source image is decoded fully once here (truncated files fail here, not in a
trainer). Palette, alpha, CMYK, 16-bit, grey and EXIF-rotated images are normalised to plain
8-bit RGB and the conversions are recorded in the sample's lineage; they are not rejected.
The source bytes are stored exactly as they are when they need no conversion and are within
the trainer's bounds (IRGL: VAE side up to 1024); otherwise the normalised image is resized
once to the bounds and encoded once, losslessly by default.

Sharding: gates see only this process's shard (`build.samples.read_samples` filters first); the
duplicates across shards are found by `curation.merge`, which runs the same pass over every
part's keys.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import imagehash
import numpy as np
from PIL import Image, ImageOps

from curation.core import images
from curation.backends.base import SourceItem
from curation.core.config import ConfigError
from curation.core.images import ImageRef
from curation.core.records import Reject, Sample
from curation.pipeline.dedup import DedupRow, StreamingDedupIndex
from curation.pipeline.store import Store
from curation.core.reasons import (
    IMAGE_ASPECT_RATIO, IMAGE_DECOMPRESSION_BOMB, IMAGE_TOO_SMALL, IMAGE_TRUNCATED, IMAGE_UNDECODABLE, PROMPT_EMPTY,
    PROMPT_MISSING, PROMPT_NOT_TEXT, PROMPT_TOO_LONG, STAGE,
)

# C0/C1 control characters other than tab and newlines, and U+FFFD (the mark a failed decode
# leaves behind): a prompt containing them is not valid text.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class GateSettings:
    max_prompt_chars: int = 2000
    min_side: int = 256  # shorter side below this: image_too_small
    max_aspect_ratio: float = 4.0  # long side / short side above this: image_aspect_ratio
    max_pixels: int = 100_000_000  # width x height above this (read from the header): bomb
    max_side: int = 1024  # storage bound: a longer side is resized down to this, once
    keep_formats: tuple[str, ...] = ("png", "jpeg", "webp")  # other formats are re-encoded
    store_format: str = "png"  # for normalised or resized images (png and webp are lossless)
    png_compress_level: int = 6  # 1 encodes ~4x faster, ~20% larger
    near_duplicate_distance: int | None = 4  # perceptual-hash bits; None turns the check off
    hash_size: int = 8  # perceptual hash of hash_size**2 bits
    # Cosine similarity of the high-quality images' embeddings (a scorer makes them) at or above
    # which a larger sample id is a `semantic_duplicate`; None turns the check off.
    semantic_duplicate_similarity: float | None = None

    def __post_init__(self):
        if self.min_side > self.max_side:
            raise ConfigError(f"gates.min_side={self.min_side} is above gates.max_side={self.max_side}")
        if self.max_aspect_ratio < 1:
            raise ConfigError(f"gates.max_aspect_ratio={self.max_aspect_ratio} must be at least 1")
        if self.store_format not in ("png", "webp", "jpeg"):
            raise ConfigError(f"gates.store_format={self.store_format!r}: use png, webp or jpeg")
        if self.near_duplicate_distance is not None and not 0 <= self.near_duplicate_distance < self.hash_size ** 2:
            raise ConfigError(f"gates.near_duplicate_distance={self.near_duplicate_distance} must be within "
                             f"[0, {self.hash_size ** 2}) or null")

    @classmethod
    def from_config(cls, cfg: Any) -> "GateSettings":
        values = {k: cfg[k] for k in cls.__dataclass_fields__ if cfg is not None and k in cfg}
        if "keep_formats" in values:
            values["keep_formats"] = tuple(str(f).lower() for f in values["keep_formats"])
        return cls(**values)


def normalise_prompt(prompt: str) -> str:
    """The form two prompts are compared in: NFC, case-folded, runs of white space as one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", prompt)).strip().casefold()


@dataclass(frozen=True)
class _CheckedImage:
    """A decoded, normalised source image and what the gates learnt about it."""

    rgb: Image.Image
    source_format: str
    source_size: tuple[int, int]
    conversions: tuple[str, ...]
    lossless: bool


@dataclass(frozen=True)
class _Inspection:
    """What `inspect` learnt about a row that passed the per-row checks."""

    prompt: str
    bytes_key: str | None = None  # sha256 of the source bytes (exact-duplicate key)
    phash: int | None = None
    stored: bytes | None = None  # the bytes the store will keep
    ref: ImageRef | None = None
    image_lineage: dict[str, Any] | None = None
    pixels: int | None = None  # of the source image, as the source has it (the best copy is the largest)
    lossless: bool | None = None  # the source format keeps every pixel (PNG over its JPEG re-encode)
    nbytes: int | None = None  # the source image's encoded size


class Gates:
    def __init__(self, settings: GateSettings, store: Store, *, scored: bool = False):
        """`scored`: a scorer runs, so a score measured after the gates may rank same-size copies;
        the gates then turn away only the rows beaten on size and format (pipeline/dedup.py)."""
        self.settings = settings
        self.store = store
        # Duplicates already certain from the rows seen so far (a smaller id collides): their model
        # stages are skipped. Which original each names is settled by the end-of-run pass
        # (pipeline/dedup.py), over every row of the run, so the answer does not depend on the order
        # rows arrive in, on sharding or on the executor.
        self._dedup = StreamingDedupIndex(max_distance=settings.near_duplicate_distance,
                                          bits=settings.hash_size ** 2, scored=scored)

    def admit(self, item: SourceItem, sample_id: str, index: int) -> Sample | Reject:
        """The decision for one row: its sample, or why it is turned away."""
        sample = self.decide(item, self.inspect(item), sample_id, index)
        return sample.reject or sample

    def admit_all(self, rows: Iterable[tuple[SourceItem, str, int]], *, workers: int = 1,
                  window: int = 64) -> Iterator[Sample]:
        """Admit rows in source order, as they come; the costly per-row checks run `workers` at a
        time ahead.

        Decoding, normalising and hashing an image depend on that row alone, so a thread pool
        runs them (Pillow releases the GIL while it decodes and resizes); the decisions that
        depend on earlier rows (duplicates) stay sequential and in order, so the result is the
        same for any number of workers. At most `window` rows are in flight. A rejected row is
        a `Sample` whose `reject` is set: it is accounted for downstream, never dropped.
        """
        if workers <= 1:
            for item, sample_id, index in rows:
                yield self.decide(item, self.inspect(item), sample_id, index)
            return
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gates") as pool:
            for row in rows:
                pending.append((row, pool.submit(self.inspect, row[0])))
                if len(pending) >= window:
                    yield self._decide_next(pending)
            while pending:
                yield self._decide_next(pending)

    def _decide_next(self, pending: deque) -> Sample:
        (item, sample_id, index), future = pending.popleft()
        return self.decide(item, future.result(), sample_id, index)

    def inspect(self, item: SourceItem) -> _Inspection | Reject:
        """Everything about one row that does not depend on other rows (thread-safe)."""
        if item.problem is not None:
            return item.problem
        prompt = self._check_prompt(item.prompt)
        if isinstance(prompt, Reject):
            return prompt
        if item.image is None:
            return _Inspection(prompt=prompt)
        checked = self._check_image(item.image)
        if isinstance(checked, Reject):
            return checked
        phash = None
        if self.settings.near_duplicate_distance is not None:
            phash = int(str(imagehash.phash(checked.rgb, hash_size=self.settings.hash_size)), 16)
        stored, ref, lineage = self._prepare_image(item.image, checked)
        width, height = checked.source_size
        return _Inspection(prompt=prompt, bytes_key=images.sha256(item.image), phash=phash,
                           stored=stored, ref=ref, image_lineage=lineage, pixels=width * height,
                           lossless=checked.lossless, nbytes=len(item.image))

    def decide(self, item: SourceItem, seen: _Inspection | Reject, sample_id: str, index: int) -> Sample:
        """The order-dependent part: duplicates against the rows seen before this one. Every row
        that passed the per-row checks carries its dedup keys (a duplicate too: the rule counts it
        as an original for larger ids), so the end-of-run pass sees them all."""
        if isinstance(seen, Reject):
            return Sample(sample_id, item.source_id, index, fields={}, reject=seen)
        prompt_key = hashlib.sha256(normalise_prompt(seen.prompt).encode()).hexdigest()
        keys = DedupRow(sample_id, prompt_key, seen.bytes_key, seen.phash, seen.pixels, seen.lossless, seen.nbytes)
        duplicate = self._dedup.first_collision(keys)
        self._dedup.add(keys)
        if duplicate is not None:
            return Sample(sample_id, item.source_id, index, fields={}, dedup=keys,
                          reject=duplicate.to_reject(self.settings.near_duplicate_distance))

        fields: dict[str, Any] = {"prompt": seen.prompt.strip()}
        source_lineage: dict[str, Any] = dict(item.meta)
        if seen.bytes_key is not None:
            fields["hq_image"] = self.store.put_image_bytes(seen.stored, seen.ref)
            source_lineage["gates"] = seen.image_lineage
        return Sample(sample_id=sample_id, source_id=item.source_id, index=index, fields=fields, dedup=keys,
                      lineage={"source": source_lineage} if source_lineage else {})

    # ------------------------------------------------------------------ prompts

    def _check_prompt(self, prompt: Any) -> str | Reject:
        if prompt is None:
            return Reject(STAGE, PROMPT_MISSING)
        if not isinstance(prompt, str):
            return Reject(STAGE, PROMPT_NOT_TEXT, f"prompt is {type(prompt).__name__}")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates: not encodable text
            return Reject(STAGE, PROMPT_NOT_TEXT, f"not encodable as UTF-8 at position {exc.start}")
        bad = _NOT_TEXT.search(prompt)
        if bad is not None:
            return Reject(STAGE, PROMPT_NOT_TEXT, f"character U+{ord(bad.group()):04X} at position {bad.start()}")
        if not prompt.strip():
            return Reject(STAGE, PROMPT_EMPTY)
        if len(prompt) > self.settings.max_prompt_chars:
            return Reject(STAGE, PROMPT_TOO_LONG,
                          f"{len(prompt)} characters (maximum {self.settings.max_prompt_chars})")
        return prompt

    # ------------------------------------------------------------------ images

    def _check_image(self, data: bytes) -> _CheckedImage | Reject:
        s = self.settings
        try:
            with warnings.catch_warnings():
                # Pillow warns above its own limit; our pixel limit below is the decision.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return Reject(STAGE, IMAGE_DECOMPRESSION_BOMB, str(exc))
        except Image.UnidentifiedImageError:  # its message holds a memory address: not reproducible
            return Reject(STAGE, IMAGE_UNDECODABLE, "not an image format Pillow recognises")
        except Exception as exc:  # Pillow raises many types for bytes that are not an image
            return Reject(STAGE, IMAGE_UNDECODABLE, f"{type(exc).__name__}: {exc}")
        with img:
            width, height = img.size
            fmt = _format_name(img.format)
            compression = img.info.get("compression")
            # Decided from the header, before a single pixel is decoded.
            if width * height > s.max_pixels:
                return Reject(STAGE, IMAGE_DECOMPRESSION_BOMB,
                              f"{width}x{height} = {width * height} pixels (maximum {s.max_pixels})")
            try:
                img.load()
            except Exception as exc:
                return Reject(STAGE, IMAGE_TRUNCATED, f"{type(exc).__name__}: {exc}")
            if min(width, height) < s.min_side:
                return Reject(STAGE, IMAGE_TOO_SMALL, f"{width}x{height} (shorter side below {s.min_side})")
            ratio = max(width, height) / min(width, height)
            if ratio > s.max_aspect_ratio:
                return Reject(STAGE, IMAGE_ASPECT_RATIO, f"{width}x{height} is {ratio:.2f}:1 "
                              f"(maximum {s.max_aspect_ratio}:1)")
            rgb, conversions = _to_rgb(img, data, fmt)
        return _CheckedImage(rgb=rgb, source_format=fmt, source_size=(width, height), conversions=conversions,
                             lossless=_is_lossless(fmt, data, compression))

    def _prepare_image(self, data: bytes, checked: _CheckedImage) -> tuple[bytes, ImageRef, dict[str, Any]]:
        """The bytes to store (the source's own when they need no change), their ref and lineage."""
        s = self.settings
        conversions = list(checked.conversions)
        if checked.source_format not in s.keep_formats:
            conversions.append(f"format {checked.source_format} -> {s.store_format}")
        rgb = checked.rgb
        if max(rgb.size) > s.max_side:
            scale = s.max_side / max(rgb.size)
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            conversions.append(f"resized {rgb.width}x{rgb.height} -> {size[0]}x{size[1]}")
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        lineage: dict[str, Any] = {"image_sha256": images.sha256(data), "image_format": checked.source_format,
                                   "image_size": list(checked.source_size)}
        if not conversions:  # kept exactly as the source had it
            ref = ImageRef(sha256=lineage["image_sha256"], format=checked.source_format, width=rgb.width,
                           height=rgb.height, nbytes=len(data))
            return data, ref, lineage
        encoded = images.encode(rgb, s.store_format, png_compress_level=s.png_compress_level)
        ref = ImageRef(sha256=images.sha256(encoded), format=s.store_format, width=rgb.width, height=rgb.height,
                       nbytes=len(encoded))
        lineage["conversions"] = conversions
        return encoded, ref, lineage


def _format_name(pillow_format: str | None) -> str:
    fmt = (pillow_format or "unknown").lower()
    return "jpeg" if fmt == "jpg" else fmt


LOSSLESS_FORMATS = ("png", "bmp", "ppm", "tga", "qoi")
_LOSSY_TIFF = ("jpeg", "tiff_jpeg", "webp")


def _is_lossless(fmt: str, data: bytes, compression: Any) -> bool:
    """Whether the source format keeps every pixel: PNG and the like; WebP only as VP8L (its lossless
    bitstream: a lossy WebP holds a VP8 chunk); TIFF unless JPEG- or WebP-compressed. JPEG, GIF
    (256 colours) and the rest: no."""
    if fmt in LOSSLESS_FORMATS:
        return True
    if fmt == "webp":
        return _webp_image_chunk(data) == b"VP8L"
    if fmt == "tiff":
        return str(compression or "raw").lower() not in _LOSSY_TIFF
    return False


def _webp_image_chunk(data: bytes) -> bytes | None:
    """The fourcc of a WebP file's image chunk (VP8 lossy, VP8L lossless), walking the RIFF chunks
    (an extended file puts VP8X, ICCP, ANIM … before it)."""
    at = 12
    while at + 8 <= len(data):
        fourcc, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc
        if fourcc == b"ANMF":  # an animation frame: its image chunk is inside, after 16 bytes of header
            at += 8 + 16
            continue
        at += 8 + size + (size & 1)
    return None


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from a PNG's IHDR chunk (Pillow opens 16-bit RGB PNGs as 8-bit RGB silently)."""
    return data[24] if len(data) > 24 else 8


def _to_rgb(img: Image.Image, data: bytes, fmt: str) -> tuple[Image.Image, tuple[str, ...]]:
    """Plain 8-bit RGB, upright, first frame; and what was changed to get there."""
    conversions: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        conversions.append(f"first of {img.n_frames} frames")
    orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation; 2..8 turn or mirror the image
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        conversions.append(f"EXIF orientation {orientation} applied")
    mode = img.mode
    if fmt == "png" and _png_bit_depth(data) == 16:
        conversions.append("16-bit -> 8-bit")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: keep the top 8 bits (a plain convert() would clip everything above 255).
        grey = (np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB"), (*conversions, f"mode {mode} -> RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "P (transparent)"
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: dropping alpha would reveal whatever colour hides under it.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(background, rgba).convert("RGB")
        return rgb, (*conversions, f"mode {mode} -> RGB (alpha on white)")
    if mode != "RGB":
        conversions.append(f"mode {mode} -> RGB")
    return img.convert("RGB"), tuple(conversions)
