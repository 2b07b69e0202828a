"""One file per stage. Importing this package imports every module in it, and each stage class
registers itself when defined (`registered()`): a new stage is a new file here, nothing else.

The stages' declared settings (`Stage.defaults`) are also offered to Hydra as the `stages` config
group (`recipes/config.yaml` lists it first), so `stages.<name>.<knob>=...` overrides them like any
other knob, and a misspelt knob is refused when the config is composed.
"""

from __future__ import annotations

import importlib
import pkgutil

from hydra.core.config_store import ConfigStore

from curation.pipeline.stages.base import Stage, registered

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from curation.pipeline.stages.improving_plan import BasePlanForImproving, TeacherPlanForImproving  # noqa: E402


def stage_defaults() -> dict[str, dict]:
    """Every registered stage's declared settings, by stage name (alternatives of one name merged)."""
    out: dict[str, dict] = {}
    for cls in registered():
        mine = out.setdefault(cls.name, {})
        for key, value in cls.defaults.items():
            if key in mine and mine[key] != value:
                raise TypeError(f"{cls.__name__} declares {cls.name}.{key}={value!r}, another stage of that name "
                                f"{mine[key]!r}: one stage name, one default")
            mine[key] = value
        if cls.optional and "enabled" not in cls.defaults:
            raise TypeError(f"{cls.__name__} is optional but declares no `enabled` default")
    return out


ConfigStore.instance().store(group="stages", name="declared", node=stage_defaults())

__all__ = ["BasePlanForImproving", "Stage", "TeacherPlanForImproving", "registered", "stage_defaults"]
