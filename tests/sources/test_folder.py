"""`source=folder`: side-car captions and index files, on folders made here, with every bad kind mixed in."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.backends.base import BackendUnavailable
from curation.backends.sources.folder import FolderSource
from curation.pipeline.gates import Gates, GateSettings
from curation.core.records import Reject, Sample
from curation.pipeline.store import Store
from tests.gates.cases import Case, distinct_image, encode, gate_cases

SUFFIX = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"GIF8": ".gif"}


def suffix_of(data: bytes) -> str:
    return next((s for magic, s in SUFFIX.items() if data.startswith(magic)), ".png")


def outcomes(src: FolderSource, tmp_path: Path) -> dict[str, str]:
    """source id -> "ok" or the gates' reason, for every row the source yields."""
    src.check()
    store = Store(tmp_path / "cache")
    gates = Gates(GateSettings(), store)
    out = {}
    for n, item in enumerate(src.iter_items(10_000)):
        result = gates.admit(item, f"{n:016x}", n)
        assert isinstance(result, (Sample, Reject))
        out[item.source_id] = "ok" if isinstance(result, Sample) else f"{result.stage}/{result.reason}"
    store.close()
    return out


def expected(cases: list[Case], ids: list[str]) -> dict[str, str]:
    return {i: "ok" if c.reason is None else f"gates/{c.reason}" for i, c in zip(ids, cases)}


# ----------------------------------------------------------------------------- side-car captions


def write_sidecars(folder: Path, cases: list[Case]) -> list[str]:
    """Case n becomes `nnn_name.<suffix>` with a caption; alternate .txt and .json side-cars."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for n, case in enumerate(cases):
        stem = folder / f"{n:03d}_{case.name}"
        image = stem.with_suffix(suffix_of(case.image))
        image.write_bytes(case.image)
        if n % 2:
            stem.with_suffix(".json").write_text(json.dumps({"prompt": case.prompt, "license": "cc-by"}))
        else:
            stem.with_suffix(".txt").write_text(case.prompt + "\n", encoding="utf-8")
        ids.append(image.name)
    return ids


def test_sidecar_folder_every_row_and_every_reason(tmp_path):
    cases = gate_cases()
    folder = tmp_path / "pics"
    ids = write_sidecars(folder, cases)
    want = expected(cases, ids)
    # Rows only a folder can have.
    (folder / "sub").mkdir()
    (folder / "sub" / "900_no_caption.png").write_bytes(encode(distinct_image(50)))
    want["sub/900_no_caption.png"] = "gates/caption_missing"
    (folder / "901_orphan.txt").write_text("a caption whose image is gone")
    want["901_orphan.txt"] = "gates/image_missing"
    (folder / "902_bad_json.png").write_bytes(encode(distinct_image(51)))
    (folder / "902_bad_json.json").write_text("{not json")
    want["902_bad_json.png"] = "gates/row_unreadable"
    (folder / "903_latin1.png").write_bytes(encode(distinct_image(52)))
    (folder / "903_latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    want["903_latin1.png"] = "gates/prompt_not_text"
    (folder / "904_no_key.png").write_bytes(encode(distinct_image(53)))
    (folder / "904_no_key.json").write_text(json.dumps({"caption": "the wrong key"}))
    want["904_no_key.png"] = "gates/prompt_missing"
    (folder / "905_good.webp").write_bytes(encode(distinct_image(54), "WEBP", lossless=True))
    (folder / "905_good.txt").write_text("a lossless webp of a garden")
    want["905_good.webp"] = "ok"
    (folder / "README.md").write_text("not a row")
    (folder / ".DS_Store").write_bytes(b"\0")

    src = FolderSource(path=str(folder))
    assert src.provides_images
    got = outcomes(src, tmp_path)
    assert got == want
    # Sorted path order, folder by folder: the same rows in the same order on every run.
    root_rows = sorted(i for i in want if "/" not in i)
    assert list(got) == root_rows + ["sub/900_no_caption.png"]
    assert [i.source_id for i in FolderSource(path=str(folder)).iter_items(3)] == ids[:3]


# ----------------------------------------------------------------------------- index files


def write_images(folder: Path, cases: list[Case]) -> list[str]:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    paths = []
    for n, case in enumerate(cases):
        rel = f"img/{n:03d}{suffix_of(case.image)}"
        (folder / rel).write_bytes(case.image)
        paths.append(rel)
    return paths


def test_jsonl_index_with_bad_lines(tmp_path):
    cases = gate_cases()
    paths = write_images(tmp_path / "ds", cases)
    lines = [json.dumps({"text": c.prompt, "file": p}) for c, p in zip(cases, paths)]
    lines += ["{broken json", "", json.dumps(["a", "list"]), json.dumps({"text": "a cat", "file": "img/gone.png"}),
              json.dumps({"text": "a dog"})]
    (tmp_path / "ds" / "meta.jsonl").write_text("\n".join(lines) + "\n")
    src = FolderSource(path=str(tmp_path / "ds"), index="meta.jsonl", prompt_column="text", image_column="file")
    n = len(cases)
    want = expected(cases, [f"meta.jsonl:{i}" for i in range(n)])
    # The blank line is not a row; every other line is one, with its reason.
    want.update({f"meta.jsonl:{n}": "gates/row_unreadable", f"meta.jsonl:{n + 1}": "gates/row_unreadable",
                 f"meta.jsonl:{n + 2}": "gates/image_missing", f"meta.jsonl:{n + 3}": "gates/image_missing"})
    assert outcomes(src, tmp_path) == want


def test_csv_index(tmp_path):
    cases = gate_cases()
    paths = write_images(tmp_path / "ds", cases)
    with (tmp_path / "ds" / "meta.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "image"])
        writer.writerows([c.prompt, p] for c, p in zip(cases, paths))
    # A row whose bytes are not UTF-8 is rejected on its own; the rest of the file still reads.
    with (tmp_path / "ds" / "meta.csv").open("ab") as fh:
        fh.write(b"caf\xe9 terrace," + paths[0].encode() + b"\n")
    src = FolderSource(path=str(tmp_path / "ds"), index="meta.csv")
    want = expected(cases, [f"meta.csv:{i}" for i in range(len(cases))])
    want[f"meta.csv:{len(cases)}"] = "gates/prompt_not_text"
    assert outcomes(src, tmp_path) == want


def test_parquet_index_with_image_bytes(tmp_path):
    cases = gate_cases()
    folder = tmp_path / "ds"
    folder.mkdir()
    table = pa.table({"prompt": [c.prompt for c in cases],
                      "image": pa.array([{"bytes": c.image, "path": None} for c in cases],
                                        pa.struct([("bytes", pa.binary()), ("path", pa.string())]))})
    pq.write_table(table, folder / "index.parquet")
    src = FolderSource(path=str(folder), index=str(folder / "index.parquet"))
    assert outcomes(src, tmp_path) == expected(cases, [f"index.parquet:{i}" for i in range(len(cases))])


def test_prompts_only_index(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "prompts.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in ("a red ball", "", "a cube")))
    src = FolderSource(path=str(folder), index="prompts.jsonl", image_column=None)
    assert not src.provides_images
    assert outcomes(src, tmp_path) == {"prompts.jsonl:0": "ok", "prompts.jsonl:1": "gates/prompt_empty",
                                       "prompts.jsonl:2": "ok"}


# ----------------------------------------------------------------------------- start-up errors


def test_start_up_errors_are_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "meta.jsonl").write_text(json.dumps({"caption": "x", "image": "a.png"}) + "\n")
    (tmp_path / "ds" / "meta.tsv").write_text("x")
    broken = [
        FolderSource(path=str(tmp_path / "missing")),
        FolderSource(path=str(tmp_path / "empty")),
        FolderSource(path=str(tmp_path / "ds"), index="nope.jsonl"),
        FolderSource(path=str(tmp_path / "ds"), index="meta.tsv"),
        FolderSource(path=str(tmp_path / "ds"), index="meta.jsonl"),  # no "prompt" column
        FolderSource(path=str(tmp_path / "ds"), index="meta.jsonl", prompt_column="caption", image_column="file"),
    ]
    for src in broken:
        with pytest.raises(BackendUnavailable) as err:
            src.check()
        assert "\n" not in str(err.value)
