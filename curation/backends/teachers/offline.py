"""Offline world teacher: answers each chat by its template, by measuring images, not by reading any record.

A simulator of the Qwen2.5-VL teacher for machines without a GPU (see `curation/world/README.md`).
What it answers to a template lives in `curation/world/answers/` (one module per template): the
initial thinking is a plan of the prompt's scene, consistent with what the high-quality image
shows; the improving thinking segments both images, compares them object by object, and names
the differences in IRGL's four-part format.
"""

from __future__ import annotations

import asyncio

from curation.backends.base import BackendFailed, ChatRequest, Teacher, TeacherOutput
from curation.core.records import Reject
from curation.world.answers import answer_for, answered_templates


class OfflineTeacher(Teacher):
    def __init__(self, concurrency: int = 2):
        self.concurrency = concurrency

    def identity(self) -> dict:
        return {"id": "offline-world/teacher", "revision": "1", "settings": {}}

    async def chat(self, request: ChatRequest) -> TeacherOutput | Reject:
        answer = answer_for(request.template.name)
        if answer is None:  # every sample of that stage alike: the run stops, naming the fix
            raise BackendFailed(f"the offline teacher has no answer for the template {request.template.name!r} "
                                f"(it answers {', '.join(answered_templates())}): add a module to "
                                f"curation/world/answers/ that registers one")

        def work():
            return answer(request.values, {name: image.pil() for name, image in request.images.items()}, request.seed)

        result = await asyncio.to_thread(work)
        return TeacherOutput(text=result.text, lineage=result.lineage)
