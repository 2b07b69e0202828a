"""The report, loaded in headless Chromium: every trajectory is there, nothing errors, nothing injects."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import report
from curation.after_run import report as report_logic

from curation.core import schema
from tests.publish.chromium import Chromium

PAGE_SIZE = 4
MODE = "improving_full_learning"
XSS_PROMPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> a red cube'
XSS_THINKING = "<think></pre><script>window.__pwned = 3</script></think>"


def plant_untrusted_text(ds: Path) -> str:
    """Put markup in the first row of a mode, as a hostile source or teacher could; returns its sample id."""
    path = next((ds / "data" / MODE).glob("train-*.parquet"))
    table = pq.read_table(path)
    for name, text in (("prompt", XSS_PROMPT), ("improving_thinking", XSS_THINKING)):
        values = table.column(name).to_pylist()
        values[0] = text
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))
    pq.write_table(table, path)
    return table.column("sample_id")[0].as_py()


@pytest.fixture(scope="module")
def built_report(publish_dataset, tmp_path_factory):
    ds = tmp_path_factory.mktemp("report") / "ds"
    shutil.copytree(publish_dataset, ds)
    planted = plant_untrusted_text(ds)
    # Every row and every reject on show: the dataset is smaller than rows_per_mode and reject_examples.
    index = report.main([f"data={ds}", f"page_size={PAGE_SIZE}", "workers=1", "reject_examples=1000"])
    return ds, index, planted


def local_file(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


def test_report_in_headless_chromium(built_report, chromium_binary, tmp_path):
    ds, index, planted = built_report
    doc = json.loads((ds / "manifest.json").read_text())
    browser = Chromium(chromium_binary, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        pages = [index.parent / "rejects.html"]
        home = browser.open(index.as_uri())
        assert home.errors() == []
        assert home.evaluate("document.querySelectorAll('tr.mode-row').length") == len(doc["modes"])
        screenshot = home.screenshot()
        for mode, entry in doc["modes"].items():
            files = sorted((index.parent / mode).glob("page-*.html"))
            assert len(files) == -(-entry["accepted"] // PAGE_SIZE)
            shown = 0
            for number, file in enumerate(files, start=1):
                page = browser.open(file.as_uri())
                count = page.evaluate("document.querySelectorAll('article.trajectory').length")
                assert count == min(PAGE_SIZE, entry["accepted"] - (number - 1) * PAGE_SIZE)
                shown += count
                # Every thumbnail and every full-size link points at a file that exists.
                links = page.evaluate("[...document.images].map(i => i.src).concat("
                                      "[...document.querySelectorAll('a[target=_blank]')].map(a => a.href))")
                assert all(local_file(u).is_file() for u in links)
                assert bool(links) == any(c.is_image for c in schema.load(mode).columns)
                assert page.errors() == []
            assert shown == entry["accepted"]
        page = browser.open(pages[0].as_uri())
        assert page.errors() == []
        assert page.evaluate("document.querySelectorAll('tr.reject').length") == sum(
            m["rejected"] for m in doc["modes"].values())
    finally:
        browser.close()
    assert Image.open(io.BytesIO(screenshot)).size == (1280, 900)


def test_untrusted_text_shows_as_text(built_report, chromium_binary, tmp_path):
    ds, index, planted = built_report
    browser = Chromium(chromium_binary, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        # Pages follow the hash order of sample ids: find the one that shows the planted row.
        (holder,) = [p for p in (index.parent / MODE).glob("page-*.html") if f'id="s-{planted}"' in p.read_text()]
        page = browser.open(holder.as_uri())
        card = f"document.getElementById('s-{planted}')"
        assert page.evaluate("window.__pwned === undefined")
        assert page.evaluate(f"{card}.querySelectorAll('script, img[src=x]').length") == 0
        texts = page.evaluate(f"[...{card}.querySelectorAll('section.text pre')].map(p => p.textContent)")
        assert XSS_PROMPT in texts and XSS_THINKING in texts
        rejects = browser.open((index.parent / "rejects.html").as_uri())
        assert rejects.evaluate("window.__pwned === undefined")
        assert page.errors() == [] and rejects.errors() == []
    finally:
        browser.close()


def test_thumbnails_are_made_once_and_workers_change_nothing(built_report):
    ds, index, _ = built_report
    thumbs = {p: p.stat().st_mtime_ns for p in (index.parent / "thumbs").rglob("*.jpg")}
    pages = {p: p.read_bytes() for p in index.parent.rglob("page-*.html")}
    assert thumbs and pages
    report.main([f"data={ds}", f"page_size={PAGE_SIZE}", "workers=2", "reject_examples=1000"])
    assert {p: p.stat().st_mtime_ns for p in (index.parent / "thumbs").rglob("*.jpg")} == thumbs
    assert {p: p.read_bytes() for p in index.parent.rglob("page-*.html")} == pages


def test_a_damaged_dataset_still_renders_and_says_what_is_wrong(dataset_copy, tmp_path):
    path = next((dataset_copy / "data" / MODE).glob("train-*.parquet"))
    table = pq.read_table(path)
    images = table.column("initial_image").to_pylist()
    images[0] = {"bytes": b"not an image", "path": images[0]["path"]}
    lineage = table.column("lineage").to_pylist()
    lineage[1] = "{not json"
    table = table.set_column(table.schema.get_field_index("initial_image"), "initial_image",
                             pa.array(images, table.schema.field("initial_image").type))
    table = table.set_column(table.schema.get_field_index("lineage"), "lineage", pa.array(lineage, pa.string()))
    pq.write_table(table, path)
    index = report.main([f"data={dataset_copy}", f"out={tmp_path / 'report'}", "workers=1"])
    page = (index.parent / MODE / report_logic.page_name(1)).read_text()
    assert page.count('class="broken"') == 1 and "does not decode" in page
    assert "unparsable lineage" in page
    assert "could not be read" in index.read_text()


def test_the_report_shows_a_stable_sample_and_only_its_images(publish_dataset, tmp_path):
    index = report.main([f"data={publish_dataset}", f"out={tmp_path / 'r'}", "rows_per_mode=3", "reject_examples=1",
                         "workers=1"])
    doc = json.loads((publish_dataset / "manifest.json").read_text())
    text = index.read_text()
    shown_images = set()
    for mode, entry in doc["modes"].items():
        assert f"3 rows shown of {entry['accepted']}" in text
        ids = pq.read_table(publish_dataset / "data" / mode, columns=["sample_id"]).column("sample_id").to_pylist()
        expected = sorted(ids, key=lambda i: report_logic.sample_key(0, i))[:3]  # hash order, not file order
        page = (index.parent / mode / report_logic.page_name(1)).read_text()
        assert re.findall(r'<article class="trajectory" id="s-([0-9a-f]+)"', page) == expected
        shown_images |= set(re.findall(r'href="\.\./(images/[^"]+)"', page))
    on_disk = {p.relative_to(index.parent).as_posix() for p in (index.parent / "images").rglob("*.*")}
    assert on_disk == shown_images  # full-size copies of the rows shown, and of nothing else
    rejects = (index.parent / "rejects.html").read_text()
    groups = rejects.count('class="reject-group"')
    assert groups and rejects.count('class="reject"') == groups  # one example per reason
    again = report.main([f"data={publish_dataset}", f"out={tmp_path / 'r2'}", "rows_per_mode=3",
                         "reject_examples=1", "workers=1"])
    assert {p.relative_to(again.parent): p.read_bytes() for p in again.parent.rglob("*.html")} == \
           {p.relative_to(index.parent): p.read_bytes() for p in index.parent.rglob("*.html")}


def test_a_report_folder_that_cannot_be_made_is_one_sentence(publish_dataset, capfd, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["curation.report", f"data={publish_dataset}", "out=/proc/irgl-report"])
    with pytest.raises(SystemExit) as exit_:
        report.main()
    assert exit_.value.code == 2
    assert capfd.readouterr().err.startswith("error: cannot create the report folder out=/proc/irgl-report")
