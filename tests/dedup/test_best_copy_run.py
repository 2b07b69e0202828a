"""The best copy of a duplicate group is kept, whatever the layout: a local folder of world scenes
with planted copies, built by one process and by four shards + `curation.merge`, byte for byte.

Planted, each copy under a name whose sample id is *smaller* than its original's (so the old rule,
"the smaller sample id is kept", would keep the copy) and in another shard (so only the merge's
pass over every part's keys can see the pair):
- a JPEG re-encode of a PNG, same size, same prompt: the PNG is kept (lossless over lossy);
- the PNG's exact bytes under the prompt of a scene it does not show: the original is kept (its
  preference score, measured by `scorer=offline`, is higher: the score decides same-size copies);
- a smaller PNG of a scene, read after it: the larger is kept (the gates of a process that has
  seen the larger one turn the smaller away before any model stage; a shard that has not, walks it).
"""

from __future__ import annotations

import asyncio
import io

import pyarrow.parquet as pq
from PIL import Image

from curation.backends.base import ImageInput
from curation.backends.scorers.offline import OfflineScorer
from curation.backends.sources.folder import FolderSource
from curation.merge import main as merge_main
from curation.pipeline.samples import sample_id_for
from curation.writer import manifest
from tests.helpers import build, shard_digests
from tests.sources.test_recipe_run import distinct_world_rows

MODE = "initial_full_learning"
SHARDS = 4


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def preference(prompt: str, data: bytes) -> float:
    return asyncio.run(OfflineScorer().score(prompt, ImageInput.from_pil(Image.open(io.BytesIO(data))))).preference


def plant(folder):
    """Write the folder; returns {copy file: (original file, reason, why)} and every file's sample id."""
    world = distinct_world_rows(9)
    scenes, stray_prompt = world[:8], world[8][0]
    source = {"id": FolderSource(path=str(folder)).identity()["id"]}

    def sid(name):
        return sample_id_for(source, name)

    def write(name, prompt, data):
        (folder / name).write_bytes(data)
        (folder / name).with_suffix(".txt").write_text(prompt)

    for i, (prompt, image) in enumerate(scenes):
        write(f"scene{i}.png", prompt, encoded(image, "PNG"))

    def copy_name(stem, suffix, original):
        """The first `<stem>-k` whose sample id is smaller than the original's and in another shard."""
        for k in range(1000):
            name = f"{stem}-{k}{suffix}"
            a, b = int(sid(name), 16), int(sid(original), 16)
            if a < b and a % SHARDS != b % SHARDS:
                return name
        raise AssertionError("no name found")

    planted = {}
    prompt, image = scenes[0]
    name = copy_name("a-jpeg", ".jpg", "scene0.png")
    write(name, prompt, encoded(image, "JPEG", quality=90))
    planted[name] = ("scene0.png", "prompt_duplicate", "a lossless format")

    prompt, image = scenes[1]
    name = copy_name("a-copy", ".png", "scene1.png")
    png = (folder / "scene1.png").read_bytes()
    write(name, stray_prompt, png)
    assert preference(stray_prompt, png) < preference(prompt, png)  # the test's premise
    planted[name] = ("scene1.png", "image_duplicate", "a higher score")

    prompt, image = scenes[2]
    name = copy_name("z-small", ".png", "scene2.png")
    write(name, prompt + " ", encoded(image.resize((112, 112), Image.Resampling.LANCZOS), "PNG"))
    planted[name] = ("scene2.png", "prompt_duplicate", "more pixels")
    ids = {p.name: sid(p.name) for p in folder.iterdir() if p.suffix != ".txt"}
    return planted, ids


def test_the_best_copy_is_kept_by_one_process_and_by_four_shards_and_merge(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    planted, ids = plant(folder)
    args = ["recipe=initial_full", f"n={len(ids)}", "source=folder", f"source.path={folder}", "gates.min_side=96",
            "scorer=offline"]
    one = build(tmp_path, *args, out="one", cache="cache-one")
    for shard in range(SHARDS):
        build(tmp_path, *args, f"shard={shard}", f"num_shards={SHARDS}", out="many", cache="cache-many")
    many = merge_main([f"out={tmp_path / 'many'}"])

    assert shard_digests(many) == shard_digests(one)
    rejects = pq.read_table(one / "rejects" / "rejects.parquet").to_pylist()
    assert pq.read_table(many / "rejects" / "rejects.parquet").to_pylist() == rejects
    assert (manifest.read(many)["modes"][MODE]["rejects_by_reason"]
            == manifest.read(one)["modes"][MODE]["rejects_by_reason"])

    kept = {r["source_id"] for p in sorted((one / "data" / MODE).glob("*.parquet"))
            for r in pq.read_table(p, columns=["source_id"]).to_pylist()}
    rejected = {r["source_id"]: r for r in rejects if r["mode"] == MODE}
    for copy, (original, reason, why) in planted.items():
        assert ids[copy] < ids[original]  # the old rule would have kept the copy
        assert original in kept and copy in rejected, copy
        assert rejected[copy]["reason"] == reason
        assert rejected[copy]["detail"].startswith(f"same {'prompt' if reason == 'prompt_duplicate' else 'image bytes'} "
                                                   f"as {ids[original]}, kept for {why}")
    assert len(kept) == 8 and set(rejected) == set(planted)
    # The layouts walked different samples: one process turned the small copy away at the gates (it had
    # seen the larger one), the shards scored it; the bytes above are the same all the same.
    calls = [manifest.read(part)["run"]["backend_calls"].get("score_hq_image", 0)
             for part in sorted((tmp_path / "many" / "parts").iterdir())]
    assert manifest.read(one)["run"]["backend_calls"]["score_hq_image"] == len(ids) - 1 and sum(calls) == len(ids)
