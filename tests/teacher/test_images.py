"""How images reach a teacher: stored bytes, sent unchanged when already within budget, else re-encoded once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import ImageInput
from curation.backends.teachers.vllm_server import PreparedImages
from curation.core.config import load_config
from curation.core.images import ImageRef
from curation.pipeline.stages.base import StageContext
from curation.pipeline.store import Store
from tests.helpers import build
from tests.teacher.helpers import rows, server_teacher


def server(*overrides: str):
    """A `teacher=vllm_server` backend; nothing is sent, so no server is needed."""
    cfg = load_config("config", [*server_teacher("http://127.0.0.1:1"), *overrides])
    return instantiate(cfg.teacher, _convert_="all")


def picture(size: tuple[int, int], mode: str = "RGB", fmt: str = "png") -> ImageInput:
    return ImageInput.from_pil(Image.new(mode, size, "orange" if mode != "L" else 128), fmt)


def prepare(teacher, *images: ImageInput) -> list:
    async def go():
        return [await teacher.prepare_image(image) for image in images]

    return asyncio.run(go())


def sent(uri) -> tuple[str, bytes]:
    """(mime type, decoded bytes) of a data URI."""
    head, data = uri.text.split(b",", 1)
    return head.decode().removeprefix("data:").removesuffix(";base64"), base64.b64decode(data)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_an_image_within_budget_is_sent_as_stored(fmt):
    image = picture((224, 112), fmt=fmt)
    (uri, size), = prepare(server(), image)
    assert sent(uri) == (f"image/{fmt}", image.data) and size == (224, 112)
    assert "_pixels" not in image.__dict__  # never decoded


@pytest.mark.parametrize("size, mode, fmt, why", [((1024, 1024), "RGB", "png", "over the budget"),
                                                  ((96, 96), "RGB", "jpeg", "off the 28-pixel grid"),
                                                  ((224, 112), "RGBA", "png", "alpha"),
                                                  ((224, 112), "L", "png", "grey"),
                                                  ((224, 112), "L", "jpeg", "grey"),
                                                  ((224, 112), "CMYK", "jpeg", "not RGB")])
def test_any_other_image_is_resized_and_encoded_as_configured(size, mode, fmt, why):
    (uri, sent_size), = prepare(server(), picture(size, mode, fmt))
    mime, data = sent(uri)
    with Image.open(io.BytesIO(data)) as seen:
        assert (mime, seen.format, seen.mode, seen.size) == ("image/jpeg", "JPEG", "RGB", sent_size), why
    assert sent_size == {(1024, 1024): (616, 616), (96, 96): (84, 84)}.get(size, size)


def test_keep_stored_images_off_re_encodes_everything_and_is_part_of_the_identity():
    teacher = server("teacher.keep_stored_images=false")
    (uri, size), = prepare(teacher, picture((224, 112)))
    assert sent(uri)[0] == "image/jpeg" and size == (224, 112)
    assert teacher.identity()["settings"]["encoding"]["keep_stored"] is False
    assert server().identity()["settings"]["encoding"]["keep_stored"] is True


def test_each_image_is_prepared_once_by_content_not_by_object():
    teacher = server()
    large = picture((1024, 1024))
    again = ImageInput(bytes(large.data), large.ref)  # the same stored image, loaded by another stage
    first, second, third = prepare(teacher, large, again, large)
    assert first is second is third
    assert "_pixels" not in again.__dict__  # the second load never decoded: it was prepared already


def test_prepared_images_keep_the_most_recently_used_within_their_byte_budget():
    cache = PreparedImages(max_bytes=100)
    for key in "abc":
        cache.put(key, key.upper(), 40)
    assert cache.get("a") is None and (cache.get("b"), cache.get("c")) == ("B", "C")  # a went: 120 > 100
    cache.get("b")  # b is now the most recent: d pushes out c
    cache.put("d", "D", 40)
    assert (cache.get("b"), cache.get("c"), cache.get("d")) == ("B", None, "D")
    cache.put("huge", "H", 101)  # larger than the whole budget: not kept, nothing evicted for it
    assert cache.get("huge") is None and len(cache) == 2


def test_an_image_input_decodes_once_and_refuses_bytes_of_another_image():
    image = picture((56, 28))
    assert image.pil() is image.pil() and image.pil().size == (56, 28) and image.pil().mode == "RGB"
    other = picture((28, 28))
    with pytest.raises(ValueError, match="do not match"):
        ImageInput(other.data, image.ref)


def test_a_stage_loads_the_stored_bytes_without_decoding(tmp_path):
    store = Store(tmp_path)
    data = picture((56, 28)).data
    ref = store.put_image_bytes(data)
    loaded = asyncio.run(StageContext(backend=None, store=store, seed=0).load_image_input(ref))
    assert loaded.data == data and loaded.ref == ref and isinstance(loaded.ref, ImageRef)
    assert "_pixels" not in loaded.__dict__


def test_a_run_sends_the_stored_images_unchanged_to_both_stages(tmp_path, fake):
    endpoint, url = fake
    # 112 is on the 28-pixel grid: every image of this run is already what the model should see.
    out = build(tmp_path, "recipe=improving_full", "n=3", "image_size=112", *server_teacher(url))
    stored = {hashlib.sha256(base64.b64encode(p.read_bytes())).hexdigest()[:10]
              for p in (tmp_path / "cache" / "images").rglob("*.png")}
    found = rows(out, "improving_full_learning")
    assert len(found) == 3 and endpoint.requests == 6
    for row in found:
        stages = row["lineage"]["stages"]
        assert stages["initial_thinking"]["image_sizes"] == ["112x112"]
        assert stages["improving_thinking"]["image_sizes"] == ["112x112", "112x112"]
        # The fake server names a digest of each image's data URI: the stored PNG bytes, as they are,
        # and the same high-quality image in the initial and the improving request.
        initial_seen = row["initial_thinking"].split("(picture ")[1].split(" ")[0]
        target_seen = row["improving_thinking"].split("style ")[1].split(".")[0]
        assert initial_seen in stored and initial_seen == target_seen
