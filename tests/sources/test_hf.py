"""`source=hf` on a Parquet dataset with an Image feature, written here and read back with `datasets`."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from curation.backends.base import BackendUnavailable
from curation.backends.sources.hf import HFSource
from curation.pipeline.gates import Gates, GateSettings
from curation.core.records import Reject, Sample
from curation.pipeline.store import Store
from tests.gates.cases import Case, distinct_image, encode, gate_cases

FEATURES = datasets.Features({"caption": datasets.Value("string"), "image": datasets.Image(),
                              "url": datasets.Value("string")})


def hf_cases() -> list[Case]:
    """The shared gate cases, plus the two kinds only a dataset row can have: null prompt, null image."""
    return gate_cases() + [
        Case("prompt_null", None, encode(distinct_image(90)), reason="prompt_missing"),
        Case("image_null", "a boat at sea", None, reason="image_missing"),
    ]


def write_dataset(folder: Path, cases: list[Case]) -> Path:
    rows = {"caption": [c.prompt for c in cases],
            "image": [None if c.image is None else {"bytes": c.image, "path": None} for c in cases],
            "url": [f"https://example.org/{c.name}" for c in cases]}
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=FEATURES).to_parquet(str(folder / "train-00000.parquet"))
    return folder


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("hf") / "ds", hf_cases())


def source(path, tmp_path, **kw) -> HFSource:
    return HFSource(path=str(path), prompt_column=kw.pop("prompt_column", "caption"),
                    cache_dir=str(tmp_path / "hf-cache"), **kw)


@pytest.mark.parametrize("streaming", [False, True])
def test_every_row_comes_through_with_its_exact_gate_outcome(dataset_dir, tmp_path, streaming):
    src = source(dataset_dir, tmp_path, streaming=streaming)
    src.check()
    assert src.provides_images
    items = list(src.iter_items(1000))
    cases = hf_cases()
    assert [i.source_id for i in items] == [f"train:{n}" for n in range(len(cases))]
    store = Store(tmp_path / "cache")
    gates = Gates(GateSettings(), store)
    for n, (item, case) in enumerate(zip(items, cases)):
        assert item.image == case.image  # bytes exactly as the dataset stores them
        result = gates.admit(item, f"{n:016x}", n)
        if case.reason is None:
            assert isinstance(result, Sample), (case.name, result)
        else:
            assert isinstance(result, Reject) and (result.stage, result.reason) == ("gates", case.reason), case.name
    store.close()


def test_limit_reads_the_first_rows_only(dataset_dir, tmp_path):
    src = source(dataset_dir, tmp_path)
    src.check()
    assert [i.source_id for i in src.iter_items(3)] == ["train:0", "train:1", "train:2"]


def test_one_data_file_and_prompts_only(dataset_dir, tmp_path):
    src = source(dataset_dir / "train-00000.parquet", tmp_path, image_column=None)
    src.check()
    assert not src.provides_images
    first = next(src.iter_items(1))
    assert (first.prompt, first.image) == ("a red ball on a wooden table", None)


def test_save_to_disk_folder(tmp_path):
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"caption": ["a red ball"], "image": [{"bytes": encode(distinct_image(1)),
                                                                      "path": None}]},
                               features=datasets.Features({"caption": datasets.Value("string"),
                                                           "image": datasets.Image()})).save_to_disk(str(folder))
    src = source(folder, tmp_path)
    src.check()
    assert [i.prompt for i in src.iter_items(5)] == ["a red ball"]


@pytest.mark.parametrize("knobs, names", [
    ({"prompt_column": "text"}, "prompt_column='text'"),
    ({"image_column": "picture"}, "image_column='picture'"),
    ({"image_column": "url"}, "image_column='url'"),  # a column of strings, not images
    ({"prompt_column": "image"}, "prompt_column='image'"),  # a column of images, not text
    ({"split": "validation"}, "'validation'"),
])
def test_wrong_columns_or_split_fail_at_start_up_with_one_sentence(dataset_dir, tmp_path, knobs, names):
    src = source(dataset_dir, tmp_path, **knobs)
    with pytest.raises(BackendUnavailable) as err:
        src.check()
    message = str(err.value)
    assert names in message and "\n" not in message


def test_a_path_that_holds_no_dataset_fails_at_start_up(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackendUnavailable):
        source(empty, tmp_path).check()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a data file")
    with pytest.raises(BackendUnavailable):
        source(notes, tmp_path).check()
