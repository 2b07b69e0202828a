"""scripts/bagel_smoke.py without a GPU: its argument checks, its seed checks over images, and its
vLLM-Omni path end to end against the fake 0.30 server (the in-process and vLLM paths need a GPU)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.generators.fake_omni import FakeOmni
from tests.support.aio_server import ServerThread

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bagel_smoke.py"
spec = importlib.util.spec_from_file_location("bagel_smoke", SCRIPT)
smoke = importlib.util.module_from_spec(spec)
sys.modules.setdefault("bagel_smoke", smoke)  # its dataclass looks its module up while being defined
spec.loader.exec_module(smoke)


@pytest.mark.parametrize("argv", [
    [],  # nothing to run
    ["--repo-dir", "/src/Bagel"],  # in-process needs both folders
    ["--omni-url", "http://h/v1", "--prompts", "9"],
    ["--omni-url", "http://h/v1", "--size", "1000"],
    ["--omni-url", "http://h/v1", "--same-max", "5", "--differ-min", "5"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        smoke.parse_args(argv)
    assert exited.value.code == 2 and "error:" in capsys.readouterr().err


def test_the_defaults_are_eight_prompts_at_bagels_settings():
    args = smoke.parse_args(["--repo-dir", "/src/Bagel", "--model-dir", "/m"])
    assert (args.prompts, args.size, args.steps, len(smoke.PROMPTS)) == (8, 1024, 50, 8)


def image(value: int, size=(32, 32)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def test_seed_checks_over_images():
    ok = smoke.seed_problems(image(10), image(10), image(90), same_max=1.0, differ_min=5.0)
    assert ok == []
    stuck = smoke.seed_problems(image(10), image(10), image(11), same_max=1.0, differ_min=5.0)
    assert len(stuck) == 1 and "does not reach the stage that draws" in stuck[0]
    drifting = smoke.seed_problems(image(10), image(30), image(90), same_max=1.0, differ_min=5.0)
    assert len(drifting) == 1 and "same seed drew a different image" in drifting[0]
    assert smoke.mean_difference(image(0), image(0, (16, 16))) == float("inf")
    encoded = smoke.pixels(image(7)).mean()  # PIL images and encoded bytes compare alike
    assert encoded == 7.0


def test_the_omni_path_runs_against_a_server_with_0_30s_stages(tmp_path, capsys):
    fake = FakeOmni()
    with ServerThread(fake.app()) as server:
        code = smoke.main(["--omni-url", f"{server.url}/v1", "--prompts", "2", "--size", "256", "--steps", "2",
                           "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bagel_omni: 4 x" in out and "; ok" in out
    assert [d["seed"] for d in fake.dit_requests] == [0, 1, 0, smoke.OTHER_SEED_OFFSET]
    assert len(list(tmp_path.glob("bagel_omni-*.png"))) == 4


def test_the_teacher_path_with_a_teacher_that_runs_here(capsys):
    """The same code as the vLLM path, with the offline world's teacher: the stage's template, seeds, timing."""
    args = smoke.parse_args(["--teacher-model", "unused", "--size", "256"])
    drawn = [smoke.GeneratedImage(image=image(40, (256, 256)))]
    result = smoke.run_teacher(args, drawn, torch=None, overrides=["teacher=offline"])
    assert result.problems == [] and len(result.seconds) == 1
    assert result.line().startswith("teacher=offline: 1 x") and result.line().endswith("; ok")
    assert "first thinking:" in capsys.readouterr().out
