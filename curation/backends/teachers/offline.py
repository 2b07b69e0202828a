"""Offline world teacher: writes thinkings by measuring images, not by reading any record.

A simulator of the Qwen2.5-VL teacher for machines without a GPU (see
`curation/world/README.md`). The initial thinking is a plan of the prompt's scene, consistent
with what the high-quality image shows; the improving thinking segments both images, compares
them object by object, and names the differences in IRGL's four-part format.
"""

from __future__ import annotations

import asyncio

from curation.backends.base import ImprovingThinkingRequest, InitialThinkingRequest, Teacher, TeacherOutput
from curation.core.records import Reject
from curation.world.analyse import analyse
from curation.world.thinking import write_improving_thinking, write_initial_thinking


class OfflineTeacher(Teacher):
    def __init__(self, concurrency: int = 2):
        self.concurrency = concurrency

    def identity(self) -> dict:
        return {"id": "offline-world/teacher", "revision": "1", "settings": {}}

    async def initial_thinking(self, request: InitialThinkingRequest) -> TeacherOutput | Reject:
        def work():
            return write_initial_thinking(request.prompt, analyse(request.image.pil()), request.seed)

        return TeacherOutput(text=await asyncio.to_thread(work))

    async def improving_thinking(self, request: ImprovingThinkingRequest) -> TeacherOutput | Reject:
        def work():
            initial, target = analyse(request.initial_image.pil()), analyse(request.hq_image.pil())
            return write_improving_thinking(request.prompt, request.initial_thinking, initial, target, request.seed)

        text, found = await asyncio.to_thread(work)
        return TeacherOutput(text=text, lineage={"named_defects": [f.to_json() for f in found]})
