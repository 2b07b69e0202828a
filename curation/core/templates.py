"""Versioned chat prompts (`curation/templates/<name>.yaml`): a system text and a user turn of parts.

A template belongs to the stage that names it (`ChatStage.template`); its `tag` (name@version) goes
into that stage's lineage and its `digest` (the content) into that stage's key, so editing one
prompt recomputes that stage and what depends on its result, nothing else. A teacher only renders
whatever template a request carries.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Mapping

import yaml

from curation.core.config import ConfigError
from curation.core.paths import templates_dir

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class TemplateError(ConfigError):
    """A template that is missing, malformed, or uses a value or image its stage does not provide."""


@dataclass(frozen=True)
class Template:
    """A chat prompt: a system text and a user turn made of text and image parts, in order."""

    name: str
    version: int
    system: str
    user: tuple[tuple[str, str], ...]  # ("text", text with {placeholders}) or ("image", image name)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def digest(self) -> str:
        """The hash of everything the model is sent from this template (an edit without a version bump shows)."""
        blob = json.dumps([self.name, self.version, self.system, self.user], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def render(self, values: Mapping[str, str]) -> list[tuple[str, str]]:
        """The user parts with placeholders filled in one pass (a value is never re-scanned)."""
        return [(kind, _PLACEHOLDER.sub(lambda m: values[m.group(1)], text) if kind == "text" and "{" in text else text)
                for kind, text in self.user]


def load_template(name: str, *, placeholders: set[str], images: set[str]) -> Template:
    """Read `curation/templates/<name>.yaml` and check it uses only what the request provides."""
    path = templates_dir() / f"{name}.yaml"
    if not path.is_file():
        raise TemplateError(f"the prompt template {name!r} does not exist: expected {path}")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("user"), list) or "version" not in doc:
        raise TemplateError(f"the template {path} needs `name`, `version` and a `user` list of text/image parts")
    parts = []
    for part in doc["user"]:
        if not isinstance(part, dict) or len(part) != 1:
            raise TemplateError(f"the template {path} has a part {part!r}; each part is one `text:` or `image:`")
        (kind, value), = part.items()
        if kind == "text":
            unknown = set(_PLACEHOLDER.findall(value)) - placeholders
            if unknown:
                raise TemplateError(f"the template {path} uses {sorted(unknown)}; it may use only {sorted(placeholders)}")
        elif kind == "image":
            if value not in images:
                raise TemplateError(f"the template {path} shows image {value!r}; the request has {sorted(images)}")
        else:
            raise TemplateError(f"the template {path} has a part of kind {kind!r}; use text or image")
        parts.append((kind, value))
    return Template(name=doc.get("name", name), version=int(doc["version"]), system=(doc.get("system") or "").strip(),
                    user=tuple(parts))
