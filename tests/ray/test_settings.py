"""`executor=` config and the driver's bookkeeping, without starting Ray."""

from __future__ import annotations

import pytest

from curation.pipeline.ray_executor import RaySettings, merge_accounting
from curation.core.config import ConfigError, load_config


def test_executor_group_defaults_to_local_and_ray_to_the_shared_store():
    assert load_config("config", []).executor.name == "local"
    node = load_config("config", ["executor=ray", "executor.address=auto", "executor.actors=8",
                                  "executor.num_gpus_per_actor=1"]).executor
    settings = RaySettings.from_config(node)
    assert node.store == "shared"
    assert (settings.address, settings.actors, settings.num_gpus_per_actor) == ("auto", 8, 1.0)
    assert 0 < settings.num_cpus_per_actor < 1  # fractional: whole CPUs per actor starve the read task


@pytest.mark.parametrize("override, message", [
    ("executor.store=sqlite", "executor.store=shared"),
    ("executor.actors=0", "executor.actors=0"),
    ("executor.batch_size=0", "executor.batch_size=0"),
    ("executor.num_gpus_per_actor=-1", "num_gpus_per_actor=-1"),
])
def test_bad_settings_are_one_clear_error(override, message):
    node = load_config("config", ["executor=ray", override]).executor
    with pytest.raises(ConfigError, match=message):
        RaySettings.from_config(node)


def test_accounting_adds_counts_over_actors_and_recomputes_rates():
    a = {"teacher": {"calls": 10, "prompt_tokens": 100, "completion_tokens": 400, "wall_s": 4.0,
                     "completion_tokens_per_s": 100.0, "calls_per_teacher_hour": 9000.0}}
    b = {"teacher": {"calls": 30, "prompt_tokens": 300, "completion_tokens": 1200, "wall_s": 8.0,
                     "completion_tokens_per_s": 150.0, "calls_per_teacher_hour": 13500.0},
         "generator": {"calls": 5, "wall_s": 2.0}}
    merged = merge_accounting([a, b])
    assert merged["teacher"] == {"calls": 40, "prompt_tokens": 400, "completion_tokens": 1600, "wall_s": 8.0,
                                 "completion_tokens_per_s": 200.0, "calls_per_teacher_hour": 18000.0}
    assert merged["generator"] == {"calls": 5, "wall_s": 2.0}  # no rate it did not report
