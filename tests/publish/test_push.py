"""The push, tested at the huggingface_hub boundary: every HfApi call it makes goes to an in-memory Hub."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError

from curation import push
from curation.after_run import push as push_logic
from tests.publish.fakehub import FakeHub, is_lfs

TOKEN = "hf_" + "FAKE" * 8  # a fake, built so secret scanners do not flag the file
REPO = "irgl-org/irgl-demo"


@pytest.fixture
def hub(monkeypatch, tmp_path) -> FakeHub:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no login file of the machine is read
    return FakeHub().install(monkeypatch)


def push_cli(args: list[str]) -> int:
    """`python -m curation.push ARGS` as the command line runs it: its exit status (0 when main returns)."""
    saved = sys.argv
    sys.argv = ["curation.push", *args]
    try:
        push.main()
        return 0
    except SystemExit as exc:
        return exc.code
    finally:
        sys.argv = saved


def files_on_disk(ds: Path) -> dict[str, str]:
    """Every file of the dataset folder, by sha256: what the Hub must hold afterwards. The card's saved
    statistics (`assets/figures.json`) are a local cache for the report, with local file times: not published."""
    return {p.relative_to(ds).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in ds.rglob("*") if p.is_file() and p.relative_to(ds).as_posix() != "assets/figures.json"}


def test_push_is_one_commit_holding_every_file(publish_dataset, hub):
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "workers=1"]) == 0
    (commit,) = hub.commit_calls()
    adds = [op for op in commit["operations"] if isinstance(op, CommitOperationAdd)]
    wanted = files_on_disk(publish_dataset)
    assert {op.path_in_repo: op.upload_info.sha256.hex() for op in adds} == wanted
    assert len(adds) == len(commit["operations"])  # nothing else: no deletes on a fresh repo
    assert commit["repo_type"] == "dataset" and commit["revision"] == "main" and not commit["create_pr"]
    assert commit["parent_commit"] is not None  # fails instead of mixing with a concurrent push
    assert {f"data/{m}/train-00000-of-00001.parquet" for m in json.loads(
        (publish_dataset / "manifest.json").read_text())["modes"]} <= set(wanted)
    assert {"README.md", "manifest.json", "rejects/rejects.parquet", "assets/counts.png"} <= set(wanted)
    assert {k: v for k, v in hub.files().items() if k != ".gitattributes"} == wanted
    create = [kw for name, kw in hub.calls if name == "create_repo"]
    assert create == [{"repo_id": REPO, "private": False, "repo_type": "dataset", "exist_ok": True}]


def test_stale_files_of_an_earlier_push_are_deleted_in_the_same_commit(publish_dataset, hub):
    stale = "data/improving_full_learning/train-00001-of-00002.parquet"
    hub.seed({".gitattributes": b"", stale: b"old rows", "notes/keep-me.txt": b"not ours"})
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "workers=1"]) == 0
    (commit,) = hub.commit_calls()
    assert [op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationDelete)] == [stale]
    assert "notes/keep-me.txt" in hub.files() and stale not in hub.files()


def test_invalid_dataset_is_refused_before_any_hub_call(dataset_copy, hub, capfd):
    (dataset_copy / "rejects" / "rejects.parquet").unlink()
    assert push_cli([f"data={dataset_copy}", f"repo_id={REPO}", "workers=1"]) == 1
    assert hub.calls == []
    err = capfd.readouterr().err
    assert "refusing to push" in err and "rejects_missing: rejects/rejects.parquet" in err


def test_private_push_to_a_public_repo_is_refused(publish_dataset, hub, capfd):
    hub.seed({".gitattributes": b""})
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "private=true", "workers=1"]) == 2
    assert hub.commit_calls() == []
    assert "is public" in capfd.readouterr().err


def test_token_never_appears_in_output_logs_or_files(publish_dataset, hub, capfd, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "workers=1", "tag=v1"]) == 0
    hub.seed({".gitattributes": b""})  # the branch lost the files: the next push has to commit again …
    hub.fail_commit_number = 2  # … and fails, with an error that quotes the token
    original = hub.create_commit

    def failing_commit(api, *args, **kwargs):
        try:
            return original(*args, **kwargs)
        except HfHubHTTPError as exc:
            raise HfHubHTTPError(f"{exc} (request had Authorization: Bearer {TOKEN})", response=exc.response) from None

    monkeypatch.setattr(push_logic.HfApi, "create_commit", failing_commit)
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "workers=1"]) == 2
    out = capfd.readouterr()
    assert "Authorization: Bearer ***" in out.err  # the failure is reported …
    assert TOKEN not in out.out + out.err + caplog.text  # … without the token
    for path in publish_dataset.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_token_inside_the_card_is_refused(dataset_copy, hub):
    with open(dataset_copy / "README.md", "a") as fh:
        fh.write(f"\nmy token is {TOKEN}\n")
    assert push_cli([f"data={dataset_copy}", f"repo_id={REPO}", "workers=1"]) == 2
    assert hub.commit_calls() == []


def test_large_upload_goes_through_a_pull_request_and_resumes(publish_dataset, hub, capfd):
    args = [f"data={publish_dataset}", f"repo_id={REPO}", "workers=1", "max_files_per_commit=4"]
    wanted = files_on_disk(publish_dataset)
    hub.fail_commit_number = 3  # the connection drops during the third batch
    assert push_cli(args) == 2
    assert set(hub.files("main")) == {".gitattributes"}  # nothing half-published on the branch
    first_run = hub.commit_calls()
    sent = {op.path_in_repo for call in first_run[:2] for op in call["operations"]}

    assert push_cli(args) == 0
    second_run = hub.commit_calls()[len(first_run):]
    resent = {op.path_in_repo for call in second_run for op in call["operations"]}
    assert not resent & sent  # files already on the pull request are not sent again
    assert resent | sent == set(wanted)
    assert all(call["revision"] == "refs/pr/1" for call in second_run)
    assert all(len(call["operations"]) <= 4 for call in hub.commit_calls())
    merges = [kw for name, kw in hub.calls if name == "merge_pull_request"]
    assert merges == [{"repo_id": REPO, "num": 1, "repo_type": "dataset"}]
    assert {k: v for k, v in hub.files("main").items() if k != ".gitattributes"} == wanted
    assert len(hub.prs) == 1 and hub.prs[1].status == "merged"


def test_dry_run_validates_and_touches_nothing(publish_dataset, hub, capfd):
    assert push_cli([f"data={publish_dataset}", "dry_run=true", "workers=1"]) == 0
    assert hub.calls == []
    assert "manifest.json" in capfd.readouterr().err


def test_interrupted_upload_resumes_without_sending_again_what_the_hub_holds(publish_dataset, hub, capfd):
    args = [f"data={publish_dataset}", f"repo_id={REPO}", "workers=1", "threads=1"]
    wanted = files_on_disk(publish_dataset)
    sizes = {name: (publish_dataset / name).stat().st_size for name in wanted if is_lfs(name)}
    hub.fail_after_uploads = 3  # the connection drops after three LFS objects arrived, inside a batch
    assert push_cli(args) == 2
    assert hub.commit_calls() == [] and set(hub.files("main")) == {".gitattributes"}  # nothing half-published
    first = [path for path, _ in hub.sent]
    assert len(first) == 3
    assert "the connection dropped mid-upload" in capfd.readouterr().err

    assert push_cli(args) == 0
    second = [path for path, _ in hub.sent[3:]]
    assert not set(second) & set(first)  # the Hub held those already: not sent again
    assert sorted(first + second) == sorted(sizes)  # every LFS file sent exactly once over both runs
    assert sum(n for _, n in hub.sent) == sum(sizes.values())
    (commit,) = hub.commit_calls()  # still one commit, holding every file
    assert {op.path_in_repo for op in commit["operations"]} == set(wanted)
    assert {k: v for k, v in hub.files().items() if k != ".gitattributes"} == wanted
    err = capfd.readouterr().err
    total_mb = f"{sum((publish_dataset / name).stat().st_size for name in wanted) / 1e6:,.1f}"
    assert f"preuploaded {total_mb} of {total_mb} MB ({len(wanted)} of {len(wanted)} files" in err  # bytes, to the end


def test_pushing_the_same_dataset_again_sends_and_commits_nothing(publish_dataset, hub, capfd):
    args = [f"data={publish_dataset}", f"repo_id={REPO}", "workers=1"]
    assert push_cli(args) == 0
    sent, commits = list(hub.sent), len(hub.commit_calls())
    assert push_cli(args) == 0
    assert hub.sent == sent and len(hub.commit_calls()) == commits
    assert "nothing to commit" in capfd.readouterr().err


def test_files_are_preuploaded_with_the_hub_client_before_the_one_commit(publish_dataset, hub):
    assert push_cli([f"data={publish_dataset}", f"repo_id={REPO}", "workers=1", "threads=3"]) == 0
    names = [name for name, _ in hub.calls]
    assert names.index("preupload_lfs_files") < names.index("create_commit")
    preuploads = [kw for name, kw in hub.calls if name == "preupload_lfs_files"]
    assert all(kw["num_threads"] == 3 and kw["repo_type"] == "dataset" and len(kw["paths"]) <= 12 for kw in preuploads)
    (commit,) = hub.commit_calls()
    assert all(op._is_uploaded for op in commit["operations"] if is_lfs(op.path_in_repo))
