"""Global dedup through whole runs: planted exact and near duplicates give the same accepted set,
the same rejects (each naming its original, the best copy) and the same bytes whether one process
reads the source or four shards do and `curation.merge` joins them."""

from __future__ import annotations

import datasets
import pyarrow.parquet as pq
import pytest

from curation.merge import main as merge_main
from curation.writer import manifest
from tests.gates.cases import distinct_image, encode
from tests.helpers import build, shard_digests

MODE = "initial_full_learning"
DUPLICATE_REASONS = {"prompt_duplicate", "image_duplicate", "image_near_duplicate"}


def planted_rows() -> tuple[list[dict], dict[int, tuple[str, int]]]:
    """16 distinct rows, then rows repeating one of them: {row: (reason, the row it repeats)}."""
    prompts = [f"a {c} {o} in a grey studio" for c in ("red", "blue", "green", "yellow")
               for o in ("ball", "cube", "cone", "ring")]
    rows = [{"caption": p, "image": {"bytes": encode(distinct_image(i)), "path": None}} for i, p in enumerate(prompts)]
    planted = {}
    for k, original in enumerate((0, 5, 9)):  # same prompt (another case and spacing), another image
        planted[len(rows)] = ("prompt_duplicate", original)
        rows.append({"caption": "  " + prompts[original].upper(), "image": {"bytes": encode(distinct_image(100 + k)),
                                                                           "path": None}})
    for k, original in enumerate((2, 7, 12)):  # the same bytes under another prompt
        planted[len(rows)] = ("image_duplicate", original)
        rows.append({"caption": f"a copy number {k}", "image": rows[original]["image"]})
    for k, original in enumerate((3, 14)):  # re-encoded: near, not equal
        planted[len(rows)] = ("image_near_duplicate", original)
        rows.append({"caption": f"a re-encoded one {k}",
                     "image": {"bytes": encode(distinct_image(original), "JPEG", quality=85), "path": None}})
    return rows, planted


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dup-source")
    rows, planted = planted_rows()
    features = datasets.Features({"caption": datasets.Value("string"), "image": datasets.Image()})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "train.parquet"))
    return folder, len(rows), planted


def overrides(folder, n):
    return ["recipe=initial_full", f"n={n}", "source=hf", f"source.path={folder}", "source.prompt_column=caption",
            "gates.min_side=96"]


def test_four_shards_and_merge_equal_one_process_duplicates_across_shards_included(source, tmp_path):
    folder, n, planted = source
    one = build(tmp_path, *overrides(folder, n), out="one", cache="cache-one")
    for shard in range(4):
        build(tmp_path, *overrides(folder, n), f"shard={shard}", "num_shards=4", out="many", cache="cache-many")
    many = merge_main([f"out={tmp_path / 'many'}"])

    rejects = pq.read_table(one / "rejects" / "rejects.parquet").to_pylist()
    assert pq.read_table(many / "rejects" / "rejects.parquet").to_pylist() == rejects
    assert shard_digests(many) == shard_digests(one)
    assert (manifest.read(many)["modes"][MODE]["rejects_by_reason"]
            == manifest.read(one)["modes"][MODE]["rejects_by_reason"])

    # Every planted pair: the best copy is kept (all are one size: a PNG over its JPEG re-encode,
    # then more bytes, then the smaller sample id), the other names it.
    ids = {r["source_id"]: r["sample_id"] for r in rejects}
    for p in sorted((one / "data" / MODE).glob("*.parquet")):
        ids.update(dict(zip(*pq.read_table(p, columns=["source_id", "sample_id"]).to_pydict().values())))
    rejected = {r["source_id"]: r for r in rejects if r["mode"] == MODE}
    assert {r["reason"] for r in rejected.values()} <= DUPLICATE_REASONS
    rows, _ = planted_rows()

    def rank(source_id):
        data = rows[int(source_id.split(":")[1])]["image"]["bytes"]
        return (not data.startswith(b"\x89PNG"), -len(data), ids[source_id])

    for row, (reason, original) in planted.items():
        keep, drop = sorted((f"train:{row}", f"train:{original}"), key=rank)
        assert keep not in rejected and rejected[drop]["reason"] == reason, (row, reason)
        assert ids[keep] in rejected[drop]["detail"]
    # The JPEG re-encodes lose to their PNG originals, whichever sample id is smaller.
    assert all(f"train:{row}" in rejected for row, (reason, _) in planted.items() if reason == "image_near_duplicate")
    assert len(rejected) == len(planted)
    # Pairs split across parts are what only the merge's pass can find: the test needs some.
    crossing = [row for row, (_, original) in planted.items()
                if int(ids[f"train:{row}"], 16) % 4 != int(ids[f"train:{original}"], 16) % 4]
    assert crossing
    parts = sorted((tmp_path / "many" / "parts").iterdir())
    assert len(parts) == 4 and all((p / "dedup-keys.parquet").is_file() for p in parts)
