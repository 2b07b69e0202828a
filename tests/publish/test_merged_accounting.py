"""A sharded run's backend accounting: counts and seconds add up, ratios are recomputed from the sums."""

from __future__ import annotations

from curation.writer.manifest import merge_backend_accounting


def teacher(calls, completion, wall, requests, latency):
    return {"calls": calls, "prompt_tokens": 10 * calls, "completion_tokens": completion, "wall_s": wall,
            "completion_tokens_per_s": round(completion / wall, 2), "calls_per_teacher_hour": round(calls * 3600 / wall, 1),
            "http_requests": requests, "http_attempts": requests + 1, "http_retries": 1, "http_failed": 0,
            "http_refused": 0, "mean_latency_s": latency}


def test_counts_add_up_and_ratios_are_recomputed():
    parts = [{"teacher": teacher(10, 1000, 20.0, 10, 0.5), "generator": {"http_requests": 4, "mean_latency_s": 2.0}},
             {"teacher": teacher(30, 2000, 40.0, 30, 1.5), "generator": {"http_requests": 0, "mean_latency_s": None}}]
    merged = merge_backend_accounting(parts)
    t = merged["teacher"]
    assert (t["calls"], t["prompt_tokens"], t["completion_tokens"], t["wall_s"]) == (40, 400, 3000, 60.0)
    assert (t["http_requests"], t["http_attempts"], t["http_retries"]) == (40, 42, 2)
    assert t["completion_tokens_per_s"] == 50.0  # 3000 tokens over 60 teacher-seconds, not 50 + 50 summed
    assert t["calls_per_teacher_hour"] == 2400.0
    assert t["mean_latency_s"] == 1.25  # (10 x 0.5 + 30 x 1.5) / 40: weighted by requests
    assert merged["generator"] == {"http_requests": 4, "mean_latency_s": 2.0}


def test_one_part_is_its_own_merge():
    part = {"teacher": teacher(7, 700, 14.0, 7, 0.25)}
    assert merge_backend_accounting([part]) == part
