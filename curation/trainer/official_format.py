"""Read the official IRG SFT layout, written from IRGL.md ("The official on-disk format").

One folder per mode key holding `*.parquet`, read one row group at a time; one column,
`conversation`, a JSON list of turns:

- user: `{"role": "user", "content": "<text>", "need_loss": false}`
- assistant: `{"role": "assistant", "content": [part, ...]}`, a part being
  `{"type": "text", "content": "...", "need_loss": bool}` (need_loss defaults to true) or
  `{"type": "image", "content": "<base64 of the encoded file>", "need_loss": bool,
  "need_vae": bool, "need_vit": bool}` (all three default to false).

The released reader skips a row whose JSON does not parse and an image part that does not
decode, silently. This reader is strict instead: it raises, naming the file, row group and row,
so tests can prove an export never contains either.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from curation.core import images


class OfficialFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    role: str  # "user" | "assistant"
    type: str  # "text" | "image"
    content: str | bytes  # text, or the decoded image file's bytes
    need_loss: bool
    need_vae: bool = False
    need_vit: bool = False


@dataclass(frozen=True)
class Row:
    path: Path
    row_group: int
    row: int
    parts: tuple[Part, ...]


def parse_conversation(text: str) -> tuple[Part, ...]:
    try:
        turns = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise OfficialFormatError(f"conversation is not JSON: {exc}") from exc
    if not isinstance(turns, list):
        raise OfficialFormatError("conversation is not a list of turns")
    parts: list[Part] = []
    for turn in turns:
        role, content = turn.get("role"), turn.get("content")
        if role == "user" and isinstance(content, str) and content:
            parts.append(Part("user", "text", content, need_loss=bool(turn.get("need_loss", False))))
        elif role == "assistant" and isinstance(content, list) and content:
            parts.extend(_assistant_part(p) for p in content)
        else:
            raise OfficialFormatError(f"turn {turn!r:.120} is neither a user text nor an assistant part list")
    return tuple(parts)


def _assistant_part(part: dict) -> Part:
    kind, content = part.get("type"), part.get("content")
    if not isinstance(content, str) or not content:
        raise OfficialFormatError(f"assistant part of type {kind!r} has no content (the official reader drops it)")
    if kind == "text":
        return Part("assistant", "text", content, need_loss=bool(part.get("need_loss", True)))
    if kind == "image":
        try:
            data = base64.b64decode(content, validate=True)
        except binascii.Error as exc:
            raise OfficialFormatError(f"image part is not base64: {exc}") from exc
        try:
            images.probe(data)
        except images.ImageDecodeError as exc:
            raise OfficialFormatError(f"image part does not decode: {exc}") from exc
        flags = {k: bool(part.get(k, False)) for k in ("need_loss", "need_vae", "need_vit")}
        if not any(flags.values()):
            raise OfficialFormatError("image part has none of need_loss, need_vae, need_vit (BAGEL refuses it)")
        return Part("assistant", "image", data, **flags)
    raise OfficialFormatError(f"unknown assistant part type {kind!r}")


def read_folder(folder: Path) -> Iterator[Row]:
    """Every row of a mode folder, file by file, one row group at a time."""
    paths = sorted(folder.glob("*.parquet"))
    if not paths:
        raise OfficialFormatError(f"{folder}: no *.parquet files")
    for path in paths:
        f = pq.ParquetFile(path)
        if f.schema_arrow.names != ["conversation"]:
            raise OfficialFormatError(f"{path}: columns {f.schema_arrow.names}, expected only `conversation`")
        for group in range(f.num_row_groups):
            for i, text in enumerate(f.read_row_group(group).column("conversation").to_pylist()):
                try:
                    parts = parse_conversation(text)
                except OfficialFormatError as exc:
                    raise OfficialFormatError(f"{path} row group {group} row {i}: {exc}") from exc
                yield Row(path, group, i, parts)


def read_info(path: Path) -> dict[str, dict]:
    """The parquet-info JSON of a mode folder: {parquet path: {num_row_groups, num_rows, row_group_rows}}."""
    return json.loads(path.read_text())
