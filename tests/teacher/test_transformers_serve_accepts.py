"""Accepted rows of every thinking mode through a real OpenAI-compatible server: `transformers serve` of a
tiny Qwen2.5-VL overfitted (in the fixture, seconds on a CPU) to write one valid initial thinking and
one valid improving thinking, with 20% transport faults injected between the teacher and the server."""

from __future__ import annotations

from tests.helpers import build
from tests.support.fault_proxy import FaultProxy, Hang, MalformedJSON, Reset, Status, one_in
from tests.support.tiny_qwen import IMPROVING_ANSWER, INITIAL_ANSWER
from tests.teacher.helpers import assert_each_sample_once, rejects, rows, server_teacher

MODES = {  # mode -> the teacher's thinkings its rows hold
    "initial_thinking_understanding_learning": ("initial_thinking",),
    "initial_thinking_generation_learning": ("initial_thinking",),
    "initial_full_learning": ("initial_thinking",),
    "improving_thinking_understanding_learning": ("improving_thinking",),
    "improving_thinking_generation_learning": ("initial_thinking", "improving_thinking"),
    "improving_full_learning": ("initial_thinking", "improving_thinking"),
}
FAULTS = [Status(503), Reset(), Status(429, retry_after=0.01), MalformedJSON(), Hang(6.0), Status(502)]


def test_every_thinking_mode_gets_accepted_rows_through_the_real_server_and_faults(served_thinking_qwen, tmp_path):
    url, folder = served_thinking_qwen
    with FaultProxy(url, one_in(5, FAULTS)) as proxy:  # one request in five fails once, each a different way
        out = build(tmp_path, "recipe=all", "n=8", "image_size=64", *server_teacher(proxy.url, str(folder), api="transformers",
                                                                                  timeout_s=5.0, max_attempts=8),
                    "teacher.sampling.temperature=0", "teacher.sampling.max_tokens=8", "teacher.concurrency=2")
    chats = [name for call, name in proxy.log if call.path.endswith("/chat/completions")]
    assert {"status_503", "reset", "status_429"} <= set(proxy.faults()) and 0.15 <= len(proxy.faults()) / len(chats)
    for mode, columns in MODES.items():
        assert_each_sample_once(out, mode, 8)
        accepted = rows(out, mode)
        assert accepted and not [r for r in rejects(out, mode) if r["stage"].endswith("thinking")], mode
        for row in accepted:
            expected = {"initial_thinking": INITIAL_ANSWER, "improving_thinking": IMPROVING_ANSWER}
            assert all(row[column] == expected[column] for column in columns if column in row), mode
            assert row["lineage"]["stages"]["initial_thinking" if "initial_thinking" in row["lineage"]["stages"]
                                            else "improving_thinking"]["backend"]["id"] == str(folder)
