"""Read `schemas/`: the one description of each mode's columns and training sequence."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import yaml

from curation.core.paths import schemas_dir

MODE_KEYS = (
    "initial_thinking_understanding_learning",
    "initial_thinking_generation_learning",
    "initial_full_learning",
    "improving_thinking_understanding_learning",
    "improving_thinking_generation_learning",
    "improving_full_learning",
)

COLUMN_TYPES = ("string", "image")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool
    source: str  # pipeline field name, or "template:<name>"

    @property
    def is_image(self) -> bool:
        return self.type == "image"

    @property
    def template(self) -> str | None:
        return self.source.split(":", 1)[1] if self.source.startswith("template:") else None


@dataclass(frozen=True)
class Segment:
    column: str
    turn: str  # "user" | "assistant"
    loss: bool
    vae: bool = False
    vit: bool = False


@dataclass(frozen=True)
class ModeSchema:
    mode: str
    short: str
    description: str
    version: int
    columns: tuple[Column, ...]
    sequence: tuple[Segment, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.mode} has no column {name!r}")

    @property
    def needed_fields(self) -> set[str]:
        """Pipeline fields this mode's rows are made from (what the plan must compute)."""
        return {c.source for c in self.columns if c.template is None}

    def features(self):
        """The Hugging Face `datasets.Features` of the shards (import kept local: datasets is heavy)."""
        import datasets

        kinds = {"string": datasets.Value("string"), "image": datasets.Image()}
        return datasets.Features({c.name: kinds[c.type] for c in self.columns})

    def arrow_schema(self):
        """Arrow schema with the `huggingface` metadata that makes `load_dataset` decode images."""
        return self.features().arrow_schema


class SchemaError(ValueError):
    pass


@lru_cache(maxsize=1)
def schema_version() -> int:
    return int((schemas_dir() / "VERSION").read_text().strip())


@lru_cache(maxsize=None)
def load(mode: str) -> ModeSchema:
    path = schemas_dir() / f"{mode}.yaml"
    if not path.is_file():
        raise SchemaError(f"unknown mode {mode!r}: expected one of {', '.join(MODE_KEYS)}")
    raw = yaml.safe_load(path.read_text())
    columns = tuple(Column(name=c["name"], type=c["type"], required=bool(c.get("required", False)),
                           source=c["from"]) for c in raw["columns"])
    sequence = tuple(Segment(column=s["column"], turn=s["turn"], loss=bool(s["loss"]),
                             vae=bool(s.get("vae", False)), vit=bool(s.get("vit", False)))
                     for s in raw["sequence"])
    schema = ModeSchema(mode=raw["mode"], short=raw["short"], description=" ".join(raw["description"].split()),
                        version=schema_version(), columns=columns, sequence=sequence)
    _check(schema, path.name)
    return schema


def _check(schema: ModeSchema, filename: str) -> None:
    names = schema.column_names
    if schema.mode not in MODE_KEYS or filename != f"{schema.mode}.yaml":
        raise SchemaError(f"{filename}: mode {schema.mode!r} is not an official mode key matching its file name")
    if len(set(names)) != len(names):
        raise SchemaError(f"{filename}: duplicate column names")
    for col in schema.columns:
        if col.type not in COLUMN_TYPES:
            raise SchemaError(f"{filename}: column {col.name} has unknown type {col.type!r}")
    for seg in schema.sequence:
        if seg.column not in names:
            raise SchemaError(f"{filename}: sequence names column {seg.column!r} that is not in columns")
        if seg.turn not in ("user", "assistant"):
            raise SchemaError(f"{filename}: segment {seg.column} has turn {seg.turn!r}")


def all_schemas() -> list[ModeSchema]:
    return [load(m) for m in MODE_KEYS]


def resolve_mode(name: str) -> str:
    """Official key or its short alias (`improving_full`) → official key."""
    if name in MODE_KEYS:
        return name
    for mode in MODE_KEYS:
        if load(mode).short == name:
            return mode
    raise SchemaError(f"unknown mode {name!r}: expected one of {', '.join(MODE_KEYS)} "
                      f"or their short names {', '.join(load(m).short for m in MODE_KEYS)}")
