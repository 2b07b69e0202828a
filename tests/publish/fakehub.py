"""An in-memory Hub behind the `HfApi` methods `curation.push` calls: the operations are captured, nothing leaves.

Each method mirrors the signature of the real one closely enough that a wrong keyword fails here
as it would against the Hub. Files are kept as content hashes, with LFS info for binary files as
the Hub reports it, so resuming logic sees what it would see for real.

LFS objects live in a content-addressed store (`lfs`, by sha256) apart from commits, as on the Hub:
`preupload_lfs_files` models huggingface_hub's client against it — the Hub names each path's upload
mode (binary files are LFS, text files regular), and its LFS batch answer lists the objects it
already holds, which the client does not send. `sent` records every object that was sent, and
`fail_after_uploads` drops the connection after that many objects have arrived (mid-upload).
`create_commit` uploads LFS files not preuploaded yet, as the real client does, and refuses a
commit that points at an LFS object the store does not hold.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub import errors as hub_errors
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import GitRefInfo, GitRefs, RepoFile, RepoUrl

PATCHED = ("create_repo", "repo_info", "list_repo_refs", "create_branch", "list_repo_tree", "create_commit",
           "get_repo_discussions", "get_discussion_details", "change_discussion_status", "merge_pull_request",
           "create_tag", "preupload_lfs_files")
REGULAR_SUFFIXES = (".md", ".json", ".gitattributes")  # what the fake Hub keeps as plain git blobs


def is_lfs(path: str) -> bool:
    return not path.endswith(REGULAR_SUFFIXES)


# The HTTP client huggingface_hub is built on (httpx, or httpx2 in newer releases): its errors carry a response.
_http = sys.modules[hub_errors.Response.__module__.split(".")[0]]


def http_error(status: int, message: str) -> HfHubHTTPError:
    request = _http.Request("POST", "https://huggingface.co/api/datasets/commit")
    return HfHubHTTPError(f"{status} {message}", response=_http.Response(status, request=request))


@dataclass
class Blob:
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, Blob]
    message: str
    operations: list = field(default_factory=list)


class FakeHub:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.commits: dict[str, Commit] = {}
        self.refs: dict[str, str] = {}  # branch or refs/pr/N -> commit oid
        self.tags: dict[str, str] = {}
        self.prs: dict[int, SimpleNamespace] = {}
        self.private = False
        self.repo_id: str | None = None
        self.fail_commit_number: int | None = None  # make the n-th create_commit call fail once
        self.lfs: dict[str, bytes] = {}  # sha256 -> content: LFS objects, committed or only preuploaded
        self.sent: list[tuple[str, int]] = []  # (path, bytes) of every LFS object sent to the store
        self.fail_after_uploads: int | None = None  # drop the connection once this many more objects arrived

    def install(self, monkeypatch) -> "FakeHub":
        for name in PATCHED:
            monkeypatch.setattr(HfApi, name, getattr(self, name))
        return self

    def _record(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))

    def _new_commit(self, files: dict[str, Blob], message: str, operations=()) -> str:
        oid = hashlib.sha1(f"{len(self.commits)}{message}".encode()).hexdigest()
        self.commits[oid] = Commit(oid, dict(files), message, list(operations))
        return oid

    def seed(self, files: dict[str, bytes], branch: str = "main") -> None:
        """A repo that an earlier push already filled."""
        self.repo_id = self.repo_id or "seeded"
        self.refs[branch] = self._new_commit({k: Blob(v) for k, v in files.items()}, "earlier push")
        self.lfs.update({hashlib.sha256(v).hexdigest(): v for k, v in files.items() if is_lfs(k)})

    def files(self, ref: str = "main") -> dict[str, str]:
        return {path: blob.sha256 for path, blob in self.commits[self.refs[ref]].files.items()}

    def commit_calls(self) -> list[dict]:
        return [kw for name, kw in self.calls if name == "create_commit"]

    # ----------------------------------------------------------------- the HfApi surface

    def create_repo(self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **kwargs):
        self._record("create_repo", repo_id=repo_id, private=private, repo_type=repo_type, exist_ok=exist_ok)
        if "main" not in self.refs:
            self.private = bool(private)
            self.refs["main"] = self._new_commit({".gitattributes": Blob(b"*.parquet filter=lfs\n")}, "initial commit")
        self.repo_id = repo_id
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def repo_info(self, repo_id, *, repo_type=None, **kwargs):
        self._record("repo_info", repo_id=repo_id, repo_type=repo_type)
        return SimpleNamespace(id=repo_id, private=self.private)

    def list_repo_refs(self, repo_id, *, repo_type=None, include_pull_requests=False, token=None):
        self._record("list_repo_refs", repo_id=repo_id, repo_type=repo_type)
        branches = [GitRefInfo(name=n, ref=f"refs/heads/{n}", target_commit=o) for n, o in self.refs.items()
                    if not n.startswith("refs/")]
        tags = [GitRefInfo(name=n, ref=f"refs/tags/{n}", target_commit=o) for n, o in self.tags.items()]
        return GitRefs(branches=branches, converts=[], tags=tags)

    def create_branch(self, repo_id, *, branch, revision=None, token=None, repo_type=None, exist_ok=False):
        self._record("create_branch", repo_id=repo_id, branch=branch, repo_type=repo_type)
        self.refs[branch] = self.refs[revision or "main"]

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, expand=False, revision=None,
                       repo_type=None, token=None):
        self._record("list_repo_tree", repo_id=repo_id, revision=revision, repo_type=repo_type)
        oid = self.refs.get(revision, revision)
        for path, blob in sorted(self.commits[oid].files.items()):
            lfs = None
            if is_lfs(path):
                lfs = {"size": len(blob.data), "oid": blob.sha256, "pointerSize": 134}
            git = hashlib.sha1(b"blob %d\0" % len(blob.data) + blob.data).hexdigest()
            yield RepoFile(path=path, size=len(blob.data), oid=git, lfs=lfs)

    def create_commit(self, repo_id, operations, *, commit_message, commit_description=None, token=None,
                      repo_type=None, revision=None, create_pr=None, num_threads=5, parent_commit=None,
                      run_as_future=False):
        operations = list(operations)
        self._record("create_commit", repo_id=repo_id, operations=operations, commit_message=commit_message,
                     repo_type=repo_type, revision=revision, create_pr=create_pr, parent_commit=parent_commit)
        if self.fail_commit_number == len(self.commit_calls()):
            self.fail_commit_number = None
            raise http_error(500, "Server Error: the connection dropped")
        base = self.refs[revision or "main"]
        if parent_commit is not None and parent_commit != base:
            raise http_error(412, "Precondition Failed: the branch moved")
        files = dict(self.commits[base].files)
        lfs_ops = [op for op in operations if isinstance(op, CommitOperationAdd) and is_lfs(op.path_in_repo)]
        self._upload([op for op in lfs_ops if not op._is_uploaded])  # the client uploads what was not preuploaded
        for op in operations:
            if isinstance(op, CommitOperationAdd) and is_lfs(op.path_in_repo):
                sha = op.upload_info.sha256.hex()
                if sha not in self.lfs:
                    raise http_error(400, f"Bad Request: LFS object {sha} of {op.path_in_repo} was never uploaded")
                files[op.path_in_repo] = Blob(self.lfs[sha])
            elif isinstance(op, CommitOperationAdd):
                files[op.path_in_repo] = Blob(Path(op.path_or_fileobj).read_bytes())
            elif isinstance(op, CommitOperationDelete):
                files.pop(op.path_in_repo)
        oid = self._new_commit(files, commit_message, operations)
        url = f"https://huggingface.co/datasets/{repo_id}/commit/{oid}"
        if create_pr:
            number = len(self.prs) + 1
            self.prs[number] = SimpleNamespace(num=number, title=commit_message, status="open",
                                               is_pull_request=True, target=revision or "main")
            self.refs[f"refs/pr/{number}"] = oid
            return CommitInfo(url, commit_message, commit_description or "", oid,
                              pr_url=f"https://huggingface.co/datasets/{repo_id}/discussions/{number}")
        self.refs[revision or "main"] = oid
        return CommitInfo(url, commit_message, commit_description or "", oid)

    def get_repo_discussions(self, repo_id, *, author=None, discussion_type=None, discussion_status=None,
                             repo_type=None, token=None):
        self._record("get_repo_discussions", repo_id=repo_id, repo_type=repo_type)
        yield from list(self.prs.values())

    def get_discussion_details(self, repo_id, discussion_num, *, repo_type=None, token=None):
        self._record("get_discussion_details", repo_id=repo_id, num=discussion_num)
        return self.prs[discussion_num]

    def change_discussion_status(self, repo_id, discussion_num, new_status, *, token=None, comment=None,
                                 repo_type=None):
        self._record("change_discussion_status", num=discussion_num, new_status=new_status)
        self.prs[discussion_num].status = new_status

    def merge_pull_request(self, repo_id, discussion_num, *, token=None, comment=None, repo_type=None):
        self._record("merge_pull_request", repo_id=repo_id, num=discussion_num, repo_type=repo_type)
        pr = self.prs[discussion_num]
        files = self.commits[self.refs[f"refs/pr/{discussion_num}"]].files
        self.refs[pr.target] = self._new_commit(files, f"Merge #{discussion_num}: {pr.title}")
        pr.status = "merged"

    def create_tag(self, repo_id, *, tag, tag_message=None, revision=None, token=None, repo_type=None,
                   exist_ok=False):
        self._record("create_tag", repo_id=repo_id, tag=tag, revision=revision, repo_type=repo_type)
        self.tags[tag] = self.refs.get(revision, revision)

    def preupload_lfs_files(self, repo_id, additions, *, token=None, repo_type=None, revision=None, create_pr=None,
                            num_threads=5, free_memory=True, gitignore_content=None):
        additions = list(additions)
        self._record("preupload_lfs_files", repo_id=repo_id, paths=[a.path_in_repo for a in additions],
                     repo_type=repo_type, revision=revision, create_pr=create_pr, num_threads=num_threads)
        for op in additions:  # the Hub's answer to /preupload: each path's upload mode
            op._upload_mode = "lfs" if is_lfs(op.path_in_repo) else "regular"
        todo = [op for op in additions if op._upload_mode == "lfs" and not op._is_uploaded]
        self._upload(todo)
        for op in todo:
            op._is_uploaded = True
            if free_memory:
                op.path_or_fileobj = b""

    def _upload(self, ops) -> None:
        """The LFS batch exchange: objects the store holds are skipped; the others are sent, one by one."""
        for op in ops:
            sha = op.upload_info.sha256.hex()
            if sha in self.lfs:
                continue  # "already present upstream": the client does not send it
            if self.fail_after_uploads is not None:
                if self.fail_after_uploads == 0:
                    self.fail_after_uploads = None
                    raise http_error(502, "Bad Gateway: the connection dropped mid-upload")
                self.fail_after_uploads -= 1
            content = Path(op.path_or_fileobj).read_bytes()
            self.lfs[sha] = content
            self.sent.append((op.path_in_repo, len(content)))
