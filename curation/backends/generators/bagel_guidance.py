"""BAGEL's guidance settings, one definition for both ways of running BAGEL.

`generator=bagel` passes them to the checkout's `InterleaveInferencer`; `generator=bagel_omni`
sends them to vLLM-Omni. Both read the same `recipes/bagel/text_to_image.yaml`, so the same
configuration draws with the same settings whichever way BAGEL runs, and both put every value in
their identity. The values are checked here, when the backend is built, so a setting BAGEL would
refuse minutes into loading (an unknown renorm type) stops the run before anything starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from curation.backends.base import BackendUnavailable

# What BAGEL's `Bagel.generate_image` implements (modeling/bagel/bagel.py): `text_channel` has its
# own branch, `global` and `channel` the other; anything else raises NotImplementedError there.
# (BAGEL's app.py lists `local` in its dropdown, which that code does not implement.)
RENORM_TYPES = ("global", "channel", "text_channel")


@dataclass(frozen=True)
class BagelGuidance:
    cfg_text_scale: float
    cfg_img_scale: float
    cfg_interval: tuple[float, float]
    cfg_renorm_type: str
    cfg_renorm_min: float
    timestep_shift: float
    num_timesteps: int

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None, knob: str = "generator.guidance") -> "BagelGuidance":
        """Build from the config mapping; a missing, unknown or impossible value is one sentence."""
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in values]
        unknown = sorted(set(values) - set(names))
        if missing or unknown:
            problem = f"lacks {missing}" if missing else f"has unknown keys {unknown}"
            raise BackendUnavailable(f"{knob} {problem}: it takes exactly {names} (recipes/bagel/text_to_image.yaml)")
        try:
            interval = tuple(float(x) for x in values["cfg_interval"])
            guidance = cls(cfg_text_scale=float(values["cfg_text_scale"]), cfg_img_scale=float(values["cfg_img_scale"]),
                           cfg_interval=interval, cfg_renorm_type=str(values["cfg_renorm_type"]),
                           cfg_renorm_min=float(values["cfg_renorm_min"]),
                           timestep_shift=float(values["timestep_shift"]), num_timesteps=int(values["num_timesteps"]))
        except (TypeError, ValueError) as exc:
            raise BackendUnavailable(f"{knob} holds a value of the wrong type: {exc}") from None
        guidance.validate(knob)
        return guidance

    def validate(self, knob: str) -> None:
        if self.cfg_renorm_type not in RENORM_TYPES:
            raise BackendUnavailable(f"{knob}.cfg_renorm_type={self.cfg_renorm_type!r} is not one BAGEL implements: "
                                     f"choose one of {list(RENORM_TYPES)}")
        lo_hi = self.cfg_interval
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
            raise BackendUnavailable(f"{knob}.cfg_interval {list(lo_hi)} must be [start, end] with "
                                     "0 <= start <= end <= 1")
        if self.num_timesteps < 1:
            raise BackendUnavailable(f"{knob}.num_timesteps={self.num_timesteps} must be at least 1")
        if not 0.0 <= self.cfg_renorm_min <= 1.0:
            raise BackendUnavailable(f"{knob}.cfg_renorm_min={self.cfg_renorm_min} must be within [0, 1]")
        if self.cfg_text_scale <= 0 or self.cfg_img_scale <= 0 or self.timestep_shift <= 0:
            raise BackendUnavailable(f"{knob}: cfg_text_scale, cfg_img_scale and timestep_shift must be positive")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values, in BAGEL's own argument names (for identities and the inferencer)."""
        return {**dataclasses.asdict(self), "cfg_interval": list(self.cfg_interval)}
