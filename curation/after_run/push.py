"""`python -m curation.push data=<dataset dir> repo_id=<org/name> [private=true] [revision=<branch>] [tag=<tag>]`

Publish a built dataset to the Hugging Face Hub so that the Hub never shows half of it.

1. Validate the folder the way the trainer reads it (`curation.after_run.validate`); refuse, listing every
   problem, if anything is wrong. Also refuse if the token appears in any text file to upload.
2. Upload the card, the manifest, every mode's shards, the rejects and the card's plots, and
   delete files under `data/`, `rejects/` and `assets/` that an earlier push left and this
   dataset no longer has (a stale shard would otherwise be read by `data/<mode>/train-*`).
   Files the branch already holds with the same content are left out of the commit.
   - First every large (LFS) file is hashed (`threads` threads: hashlib releases the GIL) and
     preuploaded with huggingface_hub's own `HfApi.preupload_lfs_files` (`threads` concurrent
     uploads), in batches with a progress line in bytes after each. LFS objects are addressed by
     their sha256, and the Hub's LFS batch answer names the objects it already holds, which
     huggingface_hub then does not send: so a push interrupted mid-upload and run again sends only
     what never arrived.
   - Up to `max_files_per_commit` operations: ONE commit (`HfApi.create_commit`) whose parent is
     the branch head we listed, so a concurrent push makes it fail instead of mixing datasets.
   - More than that (the Hub recommends at most ~100 files per commit): a pull request against
     the branch, filled in batches, then merged. The branch changes once, at the merge. The PR
     title carries a hash of the planned upload; a re-run finds that open PR, skips the files it
     already holds with the same content, and finishes the job. See docs/publishing.md.
3. Optionally tag the published commit.

The token comes from `HF_TOKEN` or the `huggingface_hub` login. It is never printed, logged or
written; error messages are scrubbed of it before they are shown.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.hf_api import RepoFile
from omegaconf import DictConfig

from curation.writer import manifest
from curation.after_run.validate import CARD, REJECTS, ValidationFailed, validate

REPO_TYPE = "dataset"
#: Folders this tool owns on the Hub: files there that the dataset no longer has are deleted.
MANAGED = ("data/", "rejects/", "assets/")
USAGE = """usage: python -m curation.push data=<dataset dir> repo_id=<org/name> [private=true] [revision=<branch>]
                                     [tag=<tag>] [dry_run=true] [threads=8] [workers=0]
  validates the dataset, then publishes it in one commit (see docs/publishing.md); dry_run=true only validates.
  The token comes from HF_TOKEN or `hf auth login`."""


class PushError(RuntimeError):
    """The push cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Published:
    url: str  # of the commit (or merged pull request) that made the dataset visible
    revision: str
    files: int
    deleted: int
    commits: int  # commits sent: 1, or the pull request's batches (the branch still changes once)
    unchanged: int = 0  # files the branch already held with the same content: not in the commit


def dataset_files(data: Path) -> list[str]:
    """Every file of the dataset, as paths in the repo: the card, the manifest, data, rejects, plots.

    Run leftovers (`parts/` of a sharded run, hidden staging folders) and a local report are not part of it.
    """
    data = Path(data)
    files = [name for name in (CARD, manifest.FILENAME, REJECTS) if (data / name).is_file()]
    for folder, pattern in (("data", "*/*.parquet"), ("assets", "*.png")):
        files += sorted(p.relative_to(data).as_posix() for p in (data / folder).glob(pattern)
                        if not any(part.startswith(".") for part in p.relative_to(data).parts))
    return files


def check_token_absent(data: Path, files: list[str], token: str) -> None:
    """Refuse if the token made it into a text file we are about to publish."""
    for name in files:
        if name.endswith((".md", ".json")) and token.encode() in (data / name).read_bytes():
            raise PushError(f"{name} contains your Hugging Face token: remove it before publishing")


def push(api: HfApi, data: Path, repo_id: str, *, private: bool = False, revision: str = "main",
         tag: str | None = None, commit_message: str | None = None, max_files_per_commit: int = 100,
         workers: int | None = None, threads: int = 8, progress=None) -> Published:
    data = Path(data)
    problems = validate(data, workers=workers)
    if problems:
        raise ValidationFailed(data, problems)
    files = dataset_files(data)
    if isinstance(api.token, str):
        check_token_absent(data, files, api.token)
    doc = manifest.read(data)
    message = commit_message or (f"Publish IRGL dataset ({doc['recipe']}: "
                                 f"{sum(m['accepted'] for m in doc['modes'].values())} rows)")

    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if private and not api.repo_info(repo_id, repo_type=REPO_TYPE).private:
        raise PushError(f"{repo_id} exists and is public, but private=true was asked: make it private on the Hub "
                        "first, or push without private=true")
    head = branch_head(api, repo_id, revision)
    remote = {f.path: f for f in api.list_repo_tree(repo_id, revision=head, recursive=True, repo_type=REPO_TYPE)
              if isinstance(f, RepoFile)}
    all_adds = hashed_operations(data, files, threads)
    adds = [op for op in all_adds if not _already_there(remote.get(op.path_in_repo), op, data)]
    deletes = [CommitOperationDelete(path_in_repo=path) for path in sorted(remote)
               if path.startswith(MANAGED) and path not in set(files)]
    if not adds and not deletes:
        print(f"{repo_id}@{revision} already holds this dataset: nothing to commit", file=sys.stderr)
        return Published(url=f"https://huggingface.co/datasets/{repo_id}/commit/{head}", revision=revision,
                         files=0, deleted=0, commits=0, unchanged=len(all_adds))
    preupload(api, repo_id, revision, adds, threads, create_pr=len(adds) + len(deletes) > max_files_per_commit,
              progress=progress or _print_progress)
    if len(adds) + len(deletes) <= max_files_per_commit:
        info = api.create_commit(repo_id, operations=[*adds, *deletes], commit_message=message,
                                 repo_type=REPO_TYPE, revision=revision, parent_commit=head)
        url, commits = info.commit_url, 1
    else:
        url, commits = push_through_pull_request(api, data, repo_id, revision, head, adds, deletes, message,
                                                 max_files_per_commit)
    if tag:
        api.create_tag(repo_id, tag=tag, revision=branch_head(api, repo_id, revision), repo_type=REPO_TYPE)
    return Published(url=url, revision=revision, files=len(adds), deleted=len(deletes), commits=commits,
                     unchanged=len(all_adds) - len(adds))


def hashed_operations(data: Path, files: list[str], threads: int) -> list[CommitOperationAdd]:
    """One `CommitOperationAdd` per file; building one hashes the file (sha256), in `threads` threads."""
    def make(name: str) -> CommitOperationAdd:
        return CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(data / name))

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(make, files))


def _print_progress(done: int, total: int, files: int, of: int) -> None:
    print(f"  preuploaded {done / 1e6:,.1f} of {total / 1e6:,.1f} MB ({files} of {of} files; the Hub skips "
          "objects it already holds)", file=sys.stderr)


def preupload(api: HfApi, repo_id: str, revision: str, adds: list[CommitOperationAdd], threads: int, *,
              create_pr: bool, progress) -> None:
    """Send the contents of `adds` before any commit, in batches of a few files per thread, reporting bytes.

    huggingface_hub decides which files are LFS (the Hub's answer per path) and uploads those;
    small files stay in the commit itself. Each batch that returns is on the Hub for good, so an
    interruption loses at most the batch in flight.
    """
    total = sum(op.upload_info.size for op in adds)
    batch = max(1, 4 * threads)
    done = 0
    for start in range(0, len(adds), batch):
        part = adds[start:start + batch]
        api.preupload_lfs_files(repo_id, additions=part, repo_type=REPO_TYPE, revision=revision,
                                create_pr=create_pr, num_threads=max(1, threads))
        done += sum(op.upload_info.size for op in part)
        progress(done, total, min(start + batch, len(adds)), len(adds))


def branch_head(api: HfApi, repo_id: str, revision: str) -> str:
    """The commit the branch points to, creating the branch from main if it does not exist yet."""
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    if any(t.name == revision for t in refs.tags):
        raise PushError(f"revision={revision} is a tag; push to a branch and add tag={revision} to tag the result")
    for branch in refs.branches:
        if branch.name == revision:
            return branch.target_commit
    api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE)
    return branch_head(api, repo_id, revision)


# ----------------------------------------------------------------------------- uploads too large for one commit


def upload_id(adds: list[CommitOperationAdd], deletes: list[CommitOperationDelete], revision: str) -> str:
    """A hash of exactly what is being published: a re-run of the same push finds its own pull request."""
    h = hashlib.sha256(revision.encode())
    for op in adds:
        h.update(f"\0{op.path_in_repo}\0{op.upload_info.sha256.hex()}".encode())
    for op in deletes:
        h.update(f"\0-{op.path_in_repo}".encode())
    return h.hexdigest()[:16]


def _already_there(remote: RepoFile | None, op: CommitOperationAdd, data: Path) -> bool:
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == op.upload_info.sha256.hex()
    content = (data / op.path_in_repo).read_bytes()  # small files are plain git blobs: compare git's sha1
    return remote.blob_id == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def push_through_pull_request(api: HfApi, data: Path, repo_id: str, revision: str, head: str,
                              adds: list[CommitOperationAdd], deletes: list[CommitOperationDelete],
                              message: str, batch: int) -> tuple[str, int]:
    marker = f"[upload {upload_id(adds, deletes, revision)}]"
    title = f"{message} {marker}"
    pr = next((d for d in api.get_repo_discussions(repo_id, discussion_type="pull_request", repo_type=REPO_TYPE)
               if marker in d.title and d.status in ("open", "draft")), None)
    commits = 0
    if pr is None:
        todo: list = [*deletes, *adds]
        first = api.create_commit(repo_id, operations=todo[:batch], commit_message=title, repo_type=REPO_TYPE,
                                  revision=revision, parent_commit=head, create_pr=True,
                                  commit_description="Opened by curation.push: filled in batches, then merged in "
                                                     "one step. Re-running the same push resumes it.")
        number, todo, commits = first.pr_num, todo[batch:], 1
    else:
        number = pr.num
        on_pr = {f.path: f for f in api.list_repo_tree(repo_id, revision=f"refs/pr/{number}", recursive=True,
                                                       repo_type=REPO_TYPE) if isinstance(f, RepoFile)}
        todo = [d for d in deletes if d.path_in_repo in on_pr]
        todo += [a for a in adds if not _already_there(on_pr.get(a.path_in_repo), a, data)]
    parts = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    for i, part in enumerate(parts, start=1):
        print(f"  pull request #{number}: batch {i} of {len(parts)} ({len(part)} files)", file=sys.stderr)
        api.create_commit(repo_id, operations=part, commit_message=f"{title} ({i}/{len(parts)})",
                          repo_type=REPO_TYPE, revision=f"refs/pr/{number}")
        commits += 1
    if api.get_discussion_details(repo_id, number, repo_type=REPO_TYPE).status == "draft":
        api.change_discussion_status(repo_id, number, "open", repo_type=REPO_TYPE)  # a draft cannot be merged
    api.merge_pull_request(repo_id, number, repo_type=REPO_TYPE, comment="All files uploaded; publishing.")
    return f"https://huggingface.co/datasets/{repo_id}/discussions/{number}", commits


# ----------------------------------------------------------------------------- command line


def scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def run(cfg: DictConfig) -> Published | None:
    data = Path(cfg.data)
    if cfg.dry_run:
        problems = validate(data, workers=cfg.workers or None)
        if problems:
            raise ValidationFailed(data, problems)
        files = dataset_files(data)
        print(f"{data}: valid; would publish {len(files)} files:", file=sys.stderr)
        for name in files:
            print(f"  {name}", file=sys.stderr)
        return None
    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    published = push(HfApi(token=token), data, cfg.repo_id, private=bool(cfg.private), revision=cfg.revision,
                     tag=cfg.tag, commit_message=cfg.commit_message,
                     max_files_per_commit=int(cfg.max_files_per_commit), workers=cfg.workers or None,
                     threads=int(cfg.threads))
    print(f"published {published.files} files to https://huggingface.co/datasets/{cfg.repo_id} "
          f"(branch {published.revision}, {published.unchanged} unchanged, {published.deleted} stale files "
          f"removed): {published.url}", file=sys.stderr)
    return published
