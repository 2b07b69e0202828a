"""The pairwise judge: both orders asked, answers parsed robustly, the initial image rejected when it wins both.

Unit tests drive the stage with a scripted chat model; the run tests use the offline world, whose
judge decides from what it measures of the two images (so the injected defects decide the verdicts).
"""

from __future__ import annotations

import asyncio
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.backends.base import Teacher, TeacherOutput
from curation.core import images, schema
from curation.core.records import Reject, StageOutput
from curation.pipeline.plan import build_plan
from curation.pipeline.stages.base import StageContext
from curation.pipeline.stages.pairwise_judge import PairwiseJudge, parse_verdict
from curation.pipeline.store import Store
from tests.helpers import backend_calls, build

MODE = "improving_full_learning"


@pytest.mark.parametrize("text,verdict,confidence", [
    ('{"verdict": "second", "reason": "more detail", "confidence": 0.8}', "second", 0.8),
    ('Sure!\n```json\n{"verdict": "first", "reason": "counts right", "confidence": "85%"}\n```', "first", 0.85),
    ("verdict: Image 2\nreason: the colours match\nconfidence: 0.6", "second", 0.6),
    ('{"Verdict": "B", "reason": "sharper"}', "second", None),
    ('{"verdict": "1.", "confidence": 90}', "first", 0.9),
])
def test_answers_parse_whatever_their_wrapping(text, verdict, confidence):
    parsed = parse_verdict(text)
    assert parsed["verdict"] == verdict and parsed["confidence"] == confidence


@pytest.mark.parametrize("text", ["I prefer neither.", '{"verdict": "both"}', '{"verdict": "first", "confidence": "high"}',
                                  '{"verdict": "second", "confidence": 7.5e3}', ""])
def test_an_answer_without_a_usable_verdict_says_what_is_wrong(text):
    assert isinstance(parse_verdict(text), str)


class ScriptedJudge(Teacher):
    """Answers by the image shown first: `answers[(name of the first image, attempt)]`, else `default`."""

    def __init__(self, names: dict[str, str], answers: dict, default: str):
        self.names, self.answers, self.default, self.calls = names, answers, default, []

    def identity(self):
        return {"id": "scripted", "revision": "1", "settings": {}}

    async def chat(self, request):
        first = self.names[request.images["first"].ref.sha256]
        attempt = sum(1 for name, _ in self.calls if name == first)
        self.calls.append((first, request.seed))
        return TeacherOutput(self.answers.get((first, attempt), self.default))


def judge(tmp_path, answers: dict, default: str = "garbage", attempts: int = 3):
    store = Store(tmp_path / "store")
    refs = {name: store.put_image_bytes(images.encode(Image.new("RGB", (32, 32), colour), "png"))
            for name, colour in (("initial", "red"), ("improved", "blue"))}
    teacher = ScriptedJudge({ref.sha256: name for name, ref in refs.items()}, answers, default)
    stage = PairwiseJudge()
    ctx = StageContext(backend=teacher, store=store, seed=10, settings={"validation_attempts": attempts})
    inputs = {"prompt": "two red balls", "initial_image": refs["initial"], "hq_image": refs["improved"]}
    return asyncio.run(stage.run(inputs, ctx)), teacher


SECOND = '{"verdict": "second", "reason": "r", "confidence": 0.9}'
FIRST = '{"verdict": "first", "reason": "r", "confidence": 0.9}'


def test_the_improved_image_preferred_in_both_orders_is_kept_with_both_verdicts(tmp_path):
    result, teacher = judge(tmp_path, {("initial", 0): SECOND, ("improved", 0): FIRST})
    assert isinstance(result, StageOutput) and result.fields == {"judge_outcome": "improved_preferred"}
    orders = result.lineage["orders"]
    assert [(o["shown_first"], o["verdict"], o["winner"]) for o in orders] == [
        ("initial", "second", "improved"), ("improved", "first", "improved")]
    assert result.lineage["template"] == "judge_pairwise@1" and len(teacher.calls) == 2
    assert len({seed for _, seed in teacher.calls}) == 2  # two requests, two seeds


def test_the_initial_image_preferred_in_both_orders_is_rejected(tmp_path):
    result, _ = judge(tmp_path, {("initial", 0): FIRST, ("improved", 0): SECOND})
    assert isinstance(result, Reject) and result.reason == "initial_judged_better" and result.stage == "pairwise_judge"
    assert "initial shown first: initial preferred" in result.detail


def test_verdicts_that_follow_the_position_are_kept_and_named(tmp_path):
    result, _ = judge(tmp_path, {("initial", 0): FIRST, ("improved", 0): FIRST})
    assert isinstance(result, StageOutput) and result.lineage["outcome"] == "orders_disagree"


def test_an_unparseable_answer_is_asked_again_then_rejected_by_name(tmp_path):
    result, teacher = judge(tmp_path, {("initial", 1): SECOND, ("improved", 0): FIRST})
    assert isinstance(result, StageOutput)
    assert [o["attempts"] for o in result.lineage["orders"]] == [2, 1]
    failed, teacher = judge(tmp_path, {("improved", 0): FIRST}, attempts=2)
    assert isinstance(failed, Reject) and failed.reason == "judge_unparseable" and "after 2 attempts" in failed.detail
    assert sum(1 for name, _ in teacher.calls if name == "initial") == 2


def test_the_judge_is_off_by_default_and_serves_only_modes_with_both_images():
    modes = {m: 2 for m in schema.MODE_KEYS}
    assert "pairwise_judge" not in {s.name for s in build_plan(modes, source_provides_images=False,
                                                                roles={"teacher", "generator", "reference"}).stages}
    plan = build_plan(modes, source_provides_images=False, roles={"teacher", "generator", "reference"},
                      settings={"pairwise_judge": {"enabled": True}})
    for mode, stages in plan.mode_stages.items():
        assert ("pairwise_judge" in stages) == mode.startswith("improving"), mode
        if "pairwise_judge" in stages:  # a check: before the teacher's thinkings that it can spare
            assert stages.index("pairwise_judge") < stages.index("improving_thinking")
    assert plan.roles["judge"] == "teacher"  # no judge configured: it asks the teacher


def _judged(out):
    rows = pq.read_table(next((out / "data" / MODE).glob("*.parquet")), columns=["lineage"]).to_pylist()
    return [json.loads(r["lineage"])["stages"] for r in rows]


def test_an_offline_judged_run_keeps_its_verdicts_and_the_defects_decide_them(tmp_path):
    plain = build(tmp_path, "recipe=improving_full", "n=16", "checker=none", out="plain")
    judged = build(tmp_path, "recipe=improving_full_judged", "n=16", "checker=none", out="judged")
    # Adding the judge re-keys nothing else: every other result, teacher calls included, is in the store.
    assert backend_calls(judged) == {"pairwise_judge": 16}
    assert "pairwise_judge" not in _judged(plain)[0]
    rows = _judged(judged)
    outcomes = {}
    for stages in rows:
        verdicts = stages["pairwise_judge"]
        assert [o["shown_first"] for o in verdicts["orders"]] == ["initial", "improved"]
        assert all(o["verdict"] in ("first", "second") and o["reason"] for o in verdicts["orders"])
        defects = bool(stages["initial_image"]["injected_defects"])
        outcomes.setdefault(defects, []).append(verdicts["outcome"])
    rejected = pq.read_table(judged / "rejects" / "rejects.parquet").to_pylist()
    assert len(rows) + len(rejected) == 16
    assert all((r["stage"], r["reason"]) == ("pairwise_judge", "initial_judged_better") for r in rejected)
    # A defective initial image loses in both orders; a clean one is a tie the judge breaks by position.
    assert outcomes[True] and set(outcomes[True]) == {"improved_preferred"}
    assert set(outcomes.get(False, [])) <= {"orders_disagree"}
    assert len(outcomes[True]) > len(rows) / 2
    # The card shows the preference rate: improved preferred / judged (kept rows and the judge's rejects).
    preferred = sum(o == "improved_preferred" for found in outcomes.values() for o in found)
    card = (judged / "README.md").read_text().split("## Judge preference")[1]
    assert f"| `improving_full` | 16 | {preferred} |" in card and f"{preferred / 16:.1%} |" in card and "63.3%" in card


def test_the_judge_shares_the_teacher_unless_one_of_its_own_is_configured():
    from curation.backends.factory import build_backends, configured_roles
    from curation.core.config import load_config

    cfg = load_config("config", ["recipe=improving_full_judged"])
    plan = build_plan({MODE: 2}, source_provides_images=False, settings={"pairwise_judge": {"enabled": True}},
                      roles=configured_roles(cfg))
    shared = build_backends(cfg, plan.roles)
    assert shared["judge"] is shared["teacher"]  # one model, one limit on requests in flight
    cfg = load_config("config", ["recipe=improving_full_judged", "+teacher@judge=offline", "judge.concurrency=5"])
    plan = build_plan({MODE: 2}, source_provides_images=False, settings={"pairwise_judge": {"enabled": True}},
                      roles=configured_roles(cfg))
    own = build_backends(cfg, plan.roles)
    assert own["judge"] is not own["teacher"] and own["judge"].concurrency == 5


def test_a_judge_of_its_own_is_built_from_its_own_config(tmp_path):
    out = build(tmp_path, "recipe=improving_full_judged", "n=2", "checker=none", "+teacher@judge=offline",
                "judge.concurrency=1")
    stages = _judged(out)[0]
    assert stages["pairwise_judge"]["backend"]["id"] == "offline-world/teacher"
    assert backend_calls(out)["pairwise_judge"] == 2
