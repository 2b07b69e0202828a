"""Rows a source cannot decode, id columns, and streamed Hub image URLs, on data written here.

- A Parquet value the reading library cannot decode (bytes that are not UTF-8 in a string column,
  a struct whose string field is such bytes) is a `row_undecodable` reject naming the row's
  position and column; every other row is read (`source=hf`, streamed or not, and `source=folder`).
- `source.id_column` makes the ids; null, empty, non-scalar or repeated ids are rejects.
- A streamed Hub imagefolder or webdataset gives image values as fsspec URLs (`hf://…`,
  `zip://a.png::hf://…`, `zip://…::https://…`); the same shapes are tested here with local files
  (`zip://a.png::/abs/train.zip`, `zip://a.png::file:///abs/train.zip`, `file:///abs/a.png`, a
  webdataset .tar), read through fsspec exactly as the remote ones are.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.backends.base import BackendUnavailable
from curation.backends.sources.folder import FolderSource
from curation.backends.sources.hf import HFSource
from curation.pipeline.gates import Gates, GateSettings
from curation.pipeline.store import Store
from curation.core.records import Reject, Sample
from tests.gates.cases import distinct_image, encode

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_IMAGE_METADATA = {b"huggingface": json.dumps({"info": {"features": {
    "caption": {"dtype": "string", "_type": "Value"}, "image": {"_type": "Image"},
    "key": {"dtype": "string", "_type": "Value"}, "note": {"dtype": "string", "_type": "Value"}}}}).encode()}


def not_utf8(text: str) -> bytes:
    return text.encode("latin-1")  # é -> 0xE9: not UTF-8


def strings(values: list) -> pa.Array:
    """A string column that may hold bytes that are not UTF-8 (as a writer that did not check leaves it)."""
    return pa.array([v if v is None or isinstance(v, bytes) else v.encode() for v in values], pa.binary()).view(
        pa.string())


def image_column(values: list[dict]) -> pa.StructArray:
    """An Image-feature column built field by field, so a path may hold bytes that are not UTF-8."""
    return pa.StructArray.from_arrays([pa.array([v["bytes"] for v in values], pa.binary()),
                                       strings([v["path"] for v in values])], names=["bytes", "path"])


def outcomes(source, tmp_path: Path, limit: int = 1000) -> list[tuple[str, str]]:
    """(source id, "ok" or the gates' reason) for each row, in order, through the real gates."""
    source.check()
    store = Store(tmp_path / f"cache-{id(source)}")
    gates = Gates(GateSettings(min_side=16), store)
    out = []
    for n, item in enumerate(source.iter_items(limit)):
        result = gates.admit(item, f"{n:016x}", n)
        assert isinstance(result, (Sample, Reject))
        out.append((item.source_id, "ok" if isinstance(result, Sample) else result.reason))
        if isinstance(result, Reject) and result.reason == "row_undecodable":
            assert f"row {n}" in result.detail  # the reject names the row's position
    store.close()
    return out


def image(seed: int) -> dict:
    return {"bytes": encode(distinct_image(seed, (64, 64))), "path": None}


# ----------------------------------------------------------------------------- rows that do not decode


@pytest.fixture(scope="module")
def undecodable_parquet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad") / "ds"
    folder.mkdir()
    captions = ["a red ball", not_utf8("a caf\xe9 terrace"), "a blue cube", "a green cone", "a pink ring",
                "a grey tower"]
    notes = ["", "", "", not_utf8("r\xe9sum\xe9"), "", ""]  # a column nobody reads
    images = [image(i) for i in range(6)]
    images[4] = {"bytes": None, "path": not_utf8("caf\xe9.png")}  # a struct whose string field does not decode
    table = pa.table({"caption": strings(captions), "image": image_column(images), "note": strings(notes)})
    pq.write_table(table.replace_schema_metadata(HF_IMAGE_METADATA), folder / "train-00000.parquet")
    return folder


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_rows_that_do_not_decode_are_rejects_and_the_rest_go_on(undecodable_parquet, tmp_path, streaming):
    src = HFSource(path=str(undecodable_parquet), prompt_column="caption", streaming=streaming,
                   cache_dir=str(tmp_path / "hf"))
    assert outcomes(src, tmp_path) == [("train:0", "ok"), ("train:1", "row_undecodable"), ("train:2", "ok"),
                                       ("train:3", "ok"),  # its bad bytes are in a column nobody reads
                                       ("train:4", "row_undecodable"), ("train:5", "ok")]


def test_folder_parquet_index_rows_that_do_not_decode(undecodable_parquet, tmp_path):
    src = FolderSource(path=str(undecodable_parquet), index="train-00000.parquet", prompt_column="caption")
    got = outcomes(src, tmp_path)
    assert [reason for _, reason in got] == ["ok", "row_undecodable", "ok", "ok", "row_undecodable", "ok"]


def test_folder_csv_line_over_the_field_limit_is_one_reject(tmp_path):
    folder = tmp_path / "ds"
    (folder / "img").mkdir(parents=True)
    rows = []
    for n, prompt in enumerate(["a red ball", "x" * 500, "a blue cube"]):
        (folder / "img" / f"{n}.png").write_bytes(image(n)["bytes"])
        rows.append([prompt, f"img/{n}.png"])
    with (folder / "meta.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["prompt", "image"], *rows])
    limit = csv.field_size_limit()
    csv.field_size_limit(200)
    try:
        got = outcomes(FolderSource(path=str(folder), index="meta.csv"), tmp_path)
    finally:
        csv.field_size_limit(limit)
    assert got == [("meta.csv:0", "ok"), ("meta.csv:1", "row_unreadable"), ("meta.csv:2", "ok")]


# ----------------------------------------------------------------------------- id columns


def id_rows(order: list[int]) -> pa.Table:
    keys = ["k-a", "k-b", "k-c", "k-d"]
    return pa.table({"caption": [f"a photo number {n}" for n in order], "image": pa.array(
        [image(n) for n in order], IMAGE_TYPE), "key": [keys[n] for n in order], "note": ["" for _ in order]})


def test_hf_id_column_keeps_ids_when_the_source_is_reshuffled(tmp_path):
    ids = {}
    for name, order in (("v1", [0, 1, 2, 3]), ("v2", [3, 1, 0, 2])):
        folder = tmp_path / name
        folder.mkdir()
        pq.write_table(id_rows(order).replace_schema_metadata(HF_IMAGE_METADATA), folder / "train.parquet")
        src = HFSource(path=str(folder), prompt_column="caption", id_column="key", cache_dir=str(tmp_path / "hf"))
        src.check()
        ids[name] = {item.source_id: item.prompt for item in src.iter_items(10)}
        assert src.identity()["settings"]["id_column"] == "key"
    assert ids["v1"] == ids["v2"] and set(ids["v1"]) == {"k-a", "k-b", "k-c", "k-d"}
    no_ids = HFSource(path=str(tmp_path / "v1"), prompt_column="caption", cache_dir=str(tmp_path / "hf"))
    no_ids.check()
    assert [i.source_id for i in no_ids.iter_items(2)] == ["train:0", "train:1"]  # as before without it
    assert "id_column" not in no_ids.identity()["settings"]


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_missing_empty_and_repeated_ids_are_rejects(tmp_path, streaming):
    folder = tmp_path / "ds"
    folder.mkdir()
    keys = ["a", "b", "a", None, " ", "c"]
    table = pa.table({"caption": [f"a photo number {n}" for n in range(6)],
                      "image": pa.array([image(n) for n in range(6)], IMAGE_TYPE), "key": keys,
                      "note": [""] * 6})
    pq.write_table(table.replace_schema_metadata(HF_IMAGE_METADATA), folder / "train.parquet")
    src = HFSource(path=str(folder), prompt_column="caption", id_column="key", streaming=streaming,
                   cache_dir=str(tmp_path / "hf"))
    assert outcomes(src, tmp_path) == [("a", "ok"), ("b", "ok"), ("train:2", "id_duplicate"),
                                       ("train:3", "id_missing"), ("train:4", "id_empty"), ("c", "ok")]


def test_id_column_is_checked_at_start_up(tmp_path, undecodable_parquet):
    for knobs, names in (({"id_column": "uid"}, "id_column='uid'"), ({"id_column": "image"}, "not text or integers")):
        with pytest.raises(BackendUnavailable) as err:
            HFSource(path=str(undecodable_parquet), prompt_column="caption", cache_dir=str(tmp_path / "hf"),
                     **knobs).check()
        assert names in str(err.value)
    with pytest.raises(BackendUnavailable, match="index file"):
        FolderSource(path=str(tmp_path), id_column="uid")


def test_folder_jsonl_id_column(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    lines = [{"prompt": "a red ball", "uid": 7}, {"prompt": "a blue cube", "uid": 7}, {"prompt": "a cone", "uid": [1]},
             {"prompt": "a ring"}, {"prompt": "a tower", "uid": "t-1"}]
    (folder / "p.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    src = FolderSource(path=str(folder), index="p.jsonl", image_column=None, id_column="uid")
    assert outcomes(src, tmp_path) == [("7", "ok"), ("p.jsonl:1", "id_duplicate"), ("p.jsonl:2", "id_invalid"),
                                       ("p.jsonl:3", "id_missing"), ("t-1", "ok")]


# ----------------------------------------------------------------------------- streamed Hub image URLs


@pytest.fixture(scope="module")
def zipped_imagefolder(tmp_path_factory) -> Path:
    """A Hub-style imagefolder archive: images and metadata.jsonl inside one zip file."""
    folder = tmp_path_factory.mktemp("imagefolder")
    with zipfile.ZipFile(folder / "train.zip", "w") as archive:
        for n in range(3):
            archive.writestr(f"{n}.png", image(n)["bytes"])
        archive.writestr("metadata.jsonl", "\n".join(json.dumps({"file_name": f"{n}.png", "text": f"a photo {n}"})
                                                     for n in range(3)))
    return folder / "train.zip"


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_imagefolder_archive_images_are_read_through_their_urls(zipped_imagefolder, tmp_path, streaming):
    src = HFSource(path=str(zipped_imagefolder), prompt_column="text", streaming=streaming,
                   cache_dir=str(tmp_path / "hf"))
    src.check()
    items = list(src.iter_items(10))
    assert [i.image for i in items] == [image(n)["bytes"] for n in range(3)]  # the archive's exact bytes
    assert outcomes(src, tmp_path) == [(f"train:{n}", "ok") for n in range(3)]


def test_hf_url_shapes_of_a_streamed_hub_dataset(zipped_imagefolder, tmp_path):
    """Image values given as URLs, as a streamed Hub dataset gives them, here with local targets."""
    loose = tmp_path / "loose.png"
    loose.write_bytes(image(9)["bytes"])
    paths = [f"zip://1.png::{zipped_imagefolder}", f"zip://2.png::file://{zipped_imagefolder}",
             f"file://{loose}", f"zip://gone.png::file://{zipped_imagefolder}", f"file://{tmp_path}/gone.png"]
    folder = tmp_path / "ds"
    folder.mkdir()
    table = pa.table({"caption": [f"a picture {n}" for n in range(5)],
                      "image": pa.array([{"bytes": None, "path": p} for p in paths], IMAGE_TYPE),
                      "key": [str(n) for n in range(5)], "note": [""] * 5})
    pq.write_table(table.replace_schema_metadata(HF_IMAGE_METADATA), folder / "train.parquet")
    src = HFSource(path=str(folder), prompt_column="caption", streaming=True, cache_dir=str(tmp_path / "hf"))
    src.check()
    items = list(src.iter_items(10))
    assert [i.image for i in items[:3]] == [image(1)["bytes"], image(2)["bytes"], image(9)["bytes"]]
    assert [(i.problem.reason, i.problem.transient) for i in items[3:]] == [("image_missing", False)] * 2


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_webdataset_tar(tmp_path, streaming):
    shard = tmp_path / "train-0000.tar"
    with tarfile.open(shard, "w") as tar:
        for n in range(3):
            for ext, data in (("png", image(n)["bytes"]), ("txt", f"a webdataset photo {n}".encode())):
                info = tarfile.TarInfo(f"{n:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    src = HFSource(path=str(shard), prompt_column="txt", image_column="png", id_column="__key__",
                   streaming=streaming, cache_dir=str(tmp_path / "hf"))
    src.check()
    items = list(src.iter_items(10))
    assert [(i.source_id, i.prompt, i.image) for i in items] == [
        (f"{n:04d}", f"a webdataset photo {n}", image(n)["bytes"]) for n in range(3)]
