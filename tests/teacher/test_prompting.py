"""What all model teachers share: the pixel budget and the versioned prompt templates."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image

from curation.backends.base import BackendUnavailable
from curation.backends.teachers.prompting import ImageBudget, fit_image, fitted_size
from curation.core.templates import TemplateError, load_template
from curation.core.paths import templates_dir


@pytest.mark.parametrize("size", [(1024, 1024), (1920, 1080), (640, 480), (96, 96), (3000, 200), (10, 10),
                                  (633, 633), (28, 28)])
@pytest.mark.parametrize("max_pixels", [50_176, 200_704, 401_408, 1_003_520])
def test_fitted_size_is_on_the_grid_within_budget_with_the_same_shape(size, max_pixels):
    budget = ImageBudget(max_pixels=max_pixels)
    w, h = fitted_size(*size, budget)
    assert w % 28 == 0 and h % 28 == 0
    assert budget.min_pixels <= w * h <= budget.max_pixels
    if min(size) >= 56 and w * h > 4 * 784:  # aspect kept up to the rounding to whole 28-pixel cells
        assert abs(w / h - size[0] / size[1]) <= (size[0] / size[1]) * (28 / min(w, h)) + 1e-9


@pytest.mark.parametrize("size", [(3000, 200), (1920, 1080), (200, 3000), (5, 5)])
def test_the_pixel_cap_holds_even_for_a_budget_of_a_few_cells(size):
    budget = ImageBudget(max_pixels=3136, min_pixels=784)
    w, h = fitted_size(*size, budget)
    assert w % 28 == 0 and h % 28 == 0 and 784 <= w * h <= 3136


def test_large_images_are_downscaled_to_the_budget_and_small_ones_kept():
    budget = ImageBudget(max_pixels=401_408)
    assert fit_image(Image.new("RGB", (1024, 1024)), budget).size == (616, 616)
    small = Image.new("RGB", (224, 112))
    assert fit_image(small, budget) is small  # already on the grid: no copy, no resampling
    assert fit_image(Image.new("RGBA", (224, 112)), budget).mode == "RGB"


def test_a_budget_below_one_cell_is_refused():
    with pytest.raises(BackendUnavailable, match="min_pixels"):
        ImageBudget(max_pixels=400, min_pixels=100)


def test_shipped_templates_load_and_carry_a_version():
    initial = load_template("teacher_initial_thinking", placeholders={"prompt"}, images={"hq_image"})
    improving = load_template("teacher_improving_thinking", placeholders={"prompt", "improving_initial_thinking"},
                              images={"initial_image", "hq_image"})
    assert initial.tag == "teacher_initial_thinking@2" and improving.tag == "teacher_improving_thinking@2"
    assert [value for kind, value in initial.user if kind == "image"] == ["hq_image"]
    assert [value for kind, value in improving.user if kind == "image"] == ["initial_image", "hq_image"]
    for template in (initial, improving):
        text = " ".join(value for kind, value in template.user if kind == "text")
        assert "<think>" in text and "</think>" in text
    assert all(h in " ".join(v for _, v in improving.user) for h in (
        "### Detailed Explanation of Required Improvements:", "### Step-by-Step Modification Guidance:",
        "### Final Comprehensive Prompt for the Improved Image:"))


def test_placeholders_are_filled_once_and_values_are_not_rescanned():
    improving = load_template("teacher_improving_thinking", placeholders={"prompt", "improving_initial_thinking"},
                              images={"initial_image", "hq_image"})
    parts = improving.render({"prompt": "a {improving_initial_thinking} sign",
                              "improving_initial_thinking": "<think>plan</think>"})
    text = "".join(value for kind, value in parts if kind == "text")
    assert "a {improving_initial_thinking} sign" in text and "<think>plan</think>" in text


def test_a_template_using_unknown_names_is_refused(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(
        {"name": "bad", "version": 1, "system": "", "user": [{"text": "{prompt} and {negative}"}]}))
    monkeypatch.setattr("curation.core.templates.templates_dir", lambda: tmp_path)
    with pytest.raises(TemplateError, match="negative"):
        load_template("bad", placeholders={"prompt"}, images={"image"})
    with pytest.raises(TemplateError, match="does not exist"):
        load_template("missing", placeholders={"prompt"}, images={"image"})
    assert (templates_dir() / "teacher_initial_thinking.yaml").is_file()
