"""Gates: every bad kind is rejected with its exact reason; odd images are normalised, not rejected."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curation.backends.base import SourceItem
from curation.pipeline.gates import Gates, GateSettings
from curation.core.records import Reject, Sample
from curation.pipeline.store import Store
from tests.gates.cases import Case, distinct_image, encode, gate_cases


def admit_all(gates: Gates, cases: list[Case]) -> list[Sample | Reject]:
    return [gates.admit(SourceItem(source_id=c.name, prompt=c.prompt, image=c.image), f"{i:016x}", i)
            for i, c in enumerate(cases)]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache")
    yield s
    s.close()


def test_every_case_gets_its_exact_outcome(store):
    cases = gate_cases()
    results = admit_all(Gates(GateSettings(), store), cases)
    for case, result in zip(cases, results):
        if case.reason is not None:
            assert isinstance(result, Reject), case.name
            assert (result.stage, result.reason) == ("gates", case.reason), case.name
            continue
        assert isinstance(result, Sample), (case.name, result)
        ref = result.fields["hq_image"]
        gate_lineage = result.lineage["source"]["gates"]
        assert tuple(gate_lineage.get("conversions", ())) == case.conversions, case.name
        stored = store.image_bytes(ref)
        if not case.conversions:  # within bounds and already plain RGB: the source bytes, untouched
            assert stored == case.image, case.name
        with Image.open(io.BytesIO(stored)) as img:
            assert img.mode == "RGB", case.name
            assert img.size == (ref.width, ref.height)
            if case.stored_size is not None:
                assert img.size == case.stored_size, case.name
        assert gate_lineage["image_sha256"] != ref.sha256 or not case.conversions


def test_duplicate_detail_names_the_smaller_sample_id(store):
    """The helper gives case i the sample id f"{i:016x}": the good row comes first, so it is the
    original and each duplicate names its sample id."""
    cases = gate_cases()
    original = f"{[c.name for c in cases].index('good_png'):016x}"
    results = {c.name: r for c, r in zip(cases, admit_all(Gates(GateSettings(), store), cases))}
    assert results["prompt_duplicate"].detail == f"same prompt as {original}"
    assert results["image_duplicate"].detail == f"same image bytes as {original}"
    assert f"from {original}" in results["image_near_duplicate"].detail


def test_gates_turn_away_only_the_copy_certain_to_lose(tmp_path):
    """A PNG and its same-size JPEG re-encode under one prompt: the PNG ranks first (lossless) whatever
    the ids, so the gates turn the JPEG away when the PNG came first, and let both through when the
    JPEG came first (the end-of-run pass decides; tests/core/test_dedup_run.py)."""
    picture = distinct_image(1)
    png = SourceItem("png", "a red ball", encode(picture))
    jpeg = SourceItem("jpeg", "a red ball", encode(picture, "JPEG", quality=95))
    small, large = "0" * 16, "f" * 16
    forward = Gates(GateSettings(), Store(tmp_path / "1"))
    assert isinstance(forward.admit(png, large, 0), Sample)
    assert forward.admit(jpeg, small, 1).detail == f"same prompt as {large}"
    backward = Gates(GateSettings(), Store(tmp_path / "2"))
    first = backward.admit(jpeg, small, 0)
    assert isinstance(first, Sample) and first.dedup[0] == small  # its keys travel to the end-of-run pass
    assert first.dedup[4:7] == (320 * 288, False, len(jpeg.image))  # pixels, lossless, bytes: what ranks it
    assert isinstance(backward.admit(png, large, 1), Sample)
    # With a score ranking copies the gates know only size and format: two same-size PNGs both pass.
    scored = Gates(GateSettings(), Store(tmp_path / "3"), scored=True)
    other = SourceItem("other", "a red ball", encode(picture, compress_level=9))
    assert isinstance(scored.admit(png, small, 0), Sample) and isinstance(scored.admit(other, large, 1), Sample)
    assert scored.admit(jpeg, "8" * 16, 2).reason == "prompt_duplicate"  # the lossy copy loses whatever its score


def test_normalised_images_are_encoded_deterministically(tmp_path):
    rgba = Case("rgba", "glass", encode(distinct_image(3).convert("RGBA")))
    one = admit_all(Gates(GateSettings(), Store(tmp_path / "1")), [rgba])[0]
    two = admit_all(Gates(GateSettings(), Store(tmp_path / "2")), [rgba])[0]
    assert one.fields["hq_image"] == two.fields["hq_image"]


def test_alpha_is_composited_on_white(store):
    image = Image.new("RGBA", (300, 300), (255, 0, 0, 0))  # fully transparent red
    sample = admit_all(Gates(GateSettings(), store), [Case("t", "nothing", encode(image))])[0]
    with Image.open(io.BytesIO(store.image_bytes(sample.fields["hq_image"]))) as img:
        assert img.getpixel((10, 10)) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_range(store):
    grey = np.full((300, 300), 40000, dtype=np.uint16)
    sample = admit_all(Gates(GateSettings(), store), [Case("g", "grey", encode(Image.fromarray(grey)))])[0]
    with Image.open(io.BytesIO(store.image_bytes(sample.fields["hq_image"]))) as img:
        assert img.getpixel((5, 5)) == (40000 >> 8,) * 3  # not clipped to white


def test_knobs_change_the_decisions(tmp_path):
    small = Case("small", "a small picture", encode(distinct_image(4, (200, 200))))
    wide = Case("wide", "a wide picture", encode(distinct_image(5, (1300, 300))))
    base = Case("base", "a picture", encode(distinct_image(6)))
    near = Case("near", "another picture", encode(distinct_image(6), "JPEG", quality=85))
    strict = Gates(GateSettings(), Store(tmp_path / "1"))
    assert [r.reason for r in admit_all(strict, [small, wide])] == ["image_too_small", "image_aspect_ratio"]
    loose = Gates(GateSettings(min_side=128, max_aspect_ratio=4.5, near_duplicate_distance=None),
                  Store(tmp_path / "2"))
    assert all(isinstance(r, Sample) for r in admit_all(loose, [small, wide, base, near]))
    tiny_limit = Gates(GateSettings(max_pixels=300 * 288 - 1), Store(tmp_path / "3"))
    assert admit_all(tiny_limit, [base])[0].reason == "image_decompression_bomb"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        GateSettings(min_side=2048, max_side=1024)
    with pytest.raises(ValueError):
        GateSettings(near_duplicate_distance=64, hash_size=8)


def test_problem_rows_come_back_as_they_are(store):
    problem = Reject("gates", "row_unreadable", "line 3 is not valid JSON")
    item = SourceItem(source_id="x", prompt=None, problem=problem)
    assert Gates(GateSettings(), store).admit(item, "0" * 16, 0) == problem


def test_prompts_without_images_pass(store):
    sample = Gates(GateSettings(), store).admit(SourceItem("p", "  a red ball  "), "0" * 16, 0)
    assert sample.fields == {"prompt": "a red ball"}
