"""Image bytes in and out: one place that encodes, decodes and hashes.

Images travel through the pipeline as `ImageRef`s (content hash plus a few facts); the bytes
live once in the store. An image is encoded exactly once, when it is made, and its bytes are
copied unchanged into the shards.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass

from PIL import Image

# Pillow's own guard against decompression bombs; gates may lower it further.
Image.MAX_IMAGE_PIXELS = 1024 * 1024 * 64


@dataclass(frozen=True)
class ImageRef:
    sha256: str
    format: str  # "png", "jpeg", "webp" — the encoded file's format, lower case
    width: int
    height: int
    nbytes: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ImageRef":
        return cls(**data)

    @property
    def filename(self) -> str:
        return f"{self.sha256}.{self.format}"


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can fully decode."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(image: Image.Image, fmt: str = "png", *, png_compress_level: int = 6, quality: int = 95) -> bytes:
    """Encode deterministically: no timestamps or text chunks, fixed settings."""
    buf = io.BytesIO()
    fmt = fmt.lower()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=png_compress_level)
    elif fmt in ("jpeg", "jpg"):
        image.convert("RGB").save(buf, format="JPEG", quality=quality, subsampling=0)
    elif fmt == "webp":
        image.save(buf, format="WEBP", lossless=True, quality=100, method=4)
    else:
        raise ValueError(f"unsupported image format {fmt!r}: use png, jpeg or webp")
    return buf.getvalue()


def probe(data: bytes) -> ImageRef:
    """Decode fully (so truncated files fail here, not in a trainer) and describe the bytes."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").lower()
            img.load()
            width, height = img.size
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, DecompressionBombError…)
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc
    fmt = "jpeg" if fmt == "jpg" else fmt
    return ImageRef(sha256=sha256(data), format=fmt or "bin", width=width, height=height, nbytes=len(data))


def decode(data: bytes, mode: str = "RGB") -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert(mode) if mode else img.copy()
    except Exception as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc
