"""The shared HTTP layer: what is retried, what is not, what a failure says, where the key goes."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

import pytest

from curation.backends.http import (AmbiguousRefusal, ApiKeyMissing, DataURI, HttpClient, HttpSettings, RequestFailed, RequestStats,
                                   ServerError, ServerGone, ServerRefused, dumps, retry_after_seconds)
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import MODEL, FakeOpenAI
from tests.support.fault_proxy import (FaultProxy, Garbled, Hang, MalformedJSON, Reset, Status, empty_content,
                                       finish_length, per_body)

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "a plan for two red balls"}], "seed": 7}


def settings(url: str, **overrides) -> HttpSettings:
    values = dict(base_url=url + "/v1", timeout_s=1.0, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    return HttpSettings(**{**values, **overrides})


def post(url: str, body: dict = BODY, **overrides) -> tuple[dict | RequestFailed | ServerRefused, RequestStats]:
    async def go():
        client = HttpClient(settings(url, **overrides))
        stats = RequestStats()
        try:
            return await client.post_json("/chat/completions", body, stats=stats), stats
        except (RequestFailed, ServerRefused, ServerGone) as exc:
            return exc, stats
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("fault", [Status(429, retry_after=0.05), Status(500), Status(502), Status(503),
                                   Status(408), Hang(3.0), Reset(), Garbled(), MalformedJSON()],
                         ids=lambda f: f.name)
def test_each_transient_fault_is_retried_to_the_clean_answer(fake, fault):
    _, url = fake
    clean, _ = post(url)
    with FaultProxy(url, per_body([fault])) as proxy:
        answer, stats = post(proxy.url)
    assert answer == clean
    assert stats.attempts == 2
    assert proxy.faults() == [fault.name]


@pytest.mark.parametrize("fault,reason", [(Status(503), "server_error"), (Status(429), "rate_limited"),
                                          (Hang(3.0), "timeout"), (Reset(), "connection_error"),
                                          (MalformedJSON(), "malformed_response"), (Garbled(), "malformed_response")],
                         ids=lambda v: str(v))
def test_after_the_last_attempt_the_failure_is_transient_and_named(fake, fault, reason):
    _, url = fake
    with FaultProxy(url, per_body([fault] * 10)) as proxy:
        failure, stats = post(proxy.url, max_attempts=3)
    assert isinstance(failure, RequestFailed)
    assert (failure.reason, failure.transient) == (reason, True)
    chats = [name for call, name in proxy.log if call.path.endswith("/chat/completions")]
    assert stats.attempts == 3 and len(chats) == 3
    # Then the server was asked whether it is there at all (GET /models): it is, so the failure is this request's.
    assert [(call.path, name) for call, name in proxy.log if call.method == "GET"] == [("/v1/models", "pass")]
    assert "(3 attempts)" in failure.detail


@pytest.mark.parametrize("fault", [Reset(), Hang(3.0), Status(503)], ids=lambda f: f.name)
def test_a_server_that_does_not_answer_the_probe_is_gone(fake, fault):
    _, url = fake
    with FaultProxy(url, lambda call: fault) as proxy:  # every request, the probe included
        failure, stats = post(proxy.url, max_attempts=2, probe_timeout_s=0.5)
    assert isinstance(failure, ServerGone) and "stopped answering" in str(failure) and "\n" not in str(failure)
    assert stats.attempts == 2 and [call.path for call, _ in proxy.log][-1] == "/v1/models"
    with FaultProxy(url, lambda call: fault) as proxy:  # without a probe, a transient reject as before
        failure, _ = post(proxy.url, max_attempts=2, probe_path=None)
    assert isinstance(failure, RequestFailed) and failure.transient


# vLLM's own error bodies (vllm/entrypoints/openai: ErrorResponse{error: {message, type, param, code}}) and
# OpenAI's ({error: {message, type, param, code}} with string codes).
TOO_LONG_VLLM = {"message": "This model's maximum context length is 16384 tokens. However, your request has 17000 "
                            "input tokens. Please reduce the length of the input messages.",
                 "type": "BadRequestError", "param": "input_tokens", "code": 400}
TOO_LONG_WITH_ANSWER = {"message": "'max_tokens' or 'max_completion_tokens' is too large: 2048.",
                        "type": "BadRequestError", "param": "max_tokens", "code": 400}
TOO_LONG_OPENAI = {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error",
                   "param": "messages", "code": "context_length_exceeded"}
POLICY_OPENAI = {"message": "Your request was rejected as a result of our safety system.",
                 "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}


@pytest.mark.parametrize("fault,reason", [
    (Status(400, error=TOO_LONG_VLLM), "request_too_long"),
    (Status(400, error=TOO_LONG_OPENAI), "request_too_long"),
    (Status(413), "request_too_long"),
    (Status(400, error=POLICY_OPENAI), "content_policy"),
], ids=["vllm_input_tokens", "openai_context_length", "payload_too_large", "content_policy"])
def test_a_request_refused_for_its_sample_is_a_named_failure_not_retried(fake, fault, reason):
    _, url = fake
    with FaultProxy(url, per_body([fault] * 3)) as proxy:
        failure, stats = post(proxy.url)
    assert isinstance(failure, RequestFailed)
    assert (failure.reason, failure.transient, failure.status, stats.attempts) == (reason, False, fault.code, 1)
    assert len(proxy.log) == 1
    if fault.error:
        assert fault.error["message"][:40] in failure.detail  # the server's words reach the reject


@pytest.mark.parametrize("fault", [
    Status(400),  # no structured cause: an unknown parameter, a bad value
    Status(400, error={"message": "[{'type': 'missing', 'loc': ('body', 'messages')}]", "type": "BadRequestError",
                       "param": None, "code": 400}),
    Status(401, error={"message": "Unauthorized"}),
    Status(403),
    Status(422),
    Status(429, error={"message": "You exceeded your current quota.", "type": "insufficient_quota",
                       "param": None, "code": "insufficient_quota"}),
], ids=["bare_400", "validation_400", "401", "403", "422", "quota_429"])
def test_a_request_refused_for_the_configuration_stops_with_the_servers_words(fake, fault):
    _, url = fake
    with FaultProxy(url, per_body([fault] * 3)) as proxy:
        failure, stats = post(proxy.url)
    assert isinstance(failure, ServerRefused) and failure.error.status == fault.code
    assert stats.attempts == 1 and len(proxy.log) == 1  # not retried: every attempt would fail alike
    message = str(failure)
    assert f"HTTP {fault.code}" in message and "\n" not in message and "fix the configuration" in message
    assert (fault.error or {"message": f"injected {fault.code}"})["message"][:20] in message


# vLLM 0.32's answer to a prompt over --max-model-len once its images are counted: the engine's input
# processor raises VLLMValidationError without a parameter (vllm/v1/engine/input_processor.py).
TOO_LONG_VLLM_IMAGES = {"message": "The decoder prompt (length 17000) is longer than the maximum model length of "
                                   "16384. Make sure that `max_model_len` is no smaller than the number of text "
                                   "tokens plus multimodal tokens.", "type": "BadRequestError", "param": None,
                        "code": 400}


@pytest.mark.parametrize("fault,ambiguous", [
    (Status(400, error=TOO_LONG_VLLM_IMAGES), True), (Status(400, error=TOO_LONG_WITH_ANSWER), True),
    (Status(400), True), (Status(400, error={"message": "bad top_k", "type": "BadRequestError", "param": "top_k",
                                             "code": 400}), False),
    (Status(422), False), (Status(404), False),
], ids=["vllm_images_over_context", "vllm_max_tokens", "bare_400", "named_parameter", "422", "404"])
def test_a_400_that_names_no_field_is_left_for_the_caller_to_judge(fake, fault, ambiguous):
    # The fields cannot tell this sample's fault from the setting's: an AmbiguousRefusal, still a
    # ServerRefused (a caller that cannot judge stops the run); the teacher measures (test_server_failures).
    _, url = fake
    with FaultProxy(url, per_body([fault] * 3)) as proxy:
        failure, stats = post(proxy.url)
    assert isinstance(failure, ServerRefused) and isinstance(failure, AmbiguousRefusal) == ambiguous
    assert stats.attempts == 1


def test_an_unknown_model_on_the_server_is_a_configuration_failure(fake):
    _, url = fake
    failure, stats = post(url, {**BODY, "model": "no/such-model"})
    assert isinstance(failure, ServerRefused) and (failure.error.status, stats.attempts) == (404, 1)
    assert "no/such-model" in str(failure)


def test_error_bodies_are_read_in_every_shape_servers_use():
    nested = ServerError.parse(400, json.dumps({"error": TOO_LONG_VLLM}).encode())
    assert (nested.type, nested.param, nested.code) == ("BadRequestError", "input_tokens", 400)
    assert nested.describe().startswith("HTTP 400 (BadRequestError, param input_tokens): This model's maximum")
    flat = ServerError.parse(400, json.dumps({"object": "error", **TOO_LONG_VLLM}).encode())  # vLLM before 0.11
    assert flat.param == "input_tokens"
    fastapi = ServerError.parse(404, b'{"detail":"Not Found"}')
    assert (fastapi.message, fastapi.type) == ("Not Found", None)
    html = ServerError.parse(502, b"<html>bad gateway\n</html>")
    assert html.message.startswith("<html>bad gateway") and "\n" not in html.describe()


def test_content_faults_pass_through_the_http_layer_untouched(fake):
    """Empty content and finish_reason=length are answers, not transport faults: validation judges them."""
    _, url = fake
    with FaultProxy(url, per_body([empty_content()], when=lambda c: c.json()["seed"] == 1)
                    ) as proxy, FaultProxy(url, per_body([finish_length()])) as proxy2:
        empty, stats = post(proxy.url, {**BODY, "seed": 1})
        cut, _ = post(proxy2.url)
    assert empty["choices"][0]["message"]["content"] == "" and stats.attempts == 1
    assert cut["choices"][0]["finish_reason"] == "length"


def test_a_server_that_is_not_there_is_a_connection_error_and_then_gone():
    failure, stats = post("http://127.0.0.1:1", max_attempts=2, probe_path=None)
    assert (failure.reason, failure.transient, stats.attempts) == ("connection_error", True, 2)
    failure, stats = post("http://127.0.0.1:1", max_attempts=2)  # the probe finds nobody either
    assert isinstance(failure, ServerGone) and "ClientConnectorError" in str(failure) and stats.attempts == 2


def test_waits_grow_exponentially_with_jitter_and_honour_retry_after():
    client = HttpClient(HttpSettings("http://x/v1", backoff_initial_s=1.0, backoff_max_s=8.0))
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        waits = {client._delay(failures, None) for _ in range(50)}
        assert all(base / 2 <= w <= base for w in waits)
        assert len(waits) > 1  # jittered

    class Limited(Exception):
        retry_after = 30.0

    assert client._delay(1, Limited()) == 30.0  # a Retry-After longer than backoff_max_s still wins
    assert retry_after_seconds("2.5") == 2.5
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= retry_after_seconds(in_ten) <= 10.0
    assert retry_after_seconds("soon") is None


def test_the_api_key_comes_from_the_named_variable_and_never_shows(monkeypatch):
    secret = "sk-test-5ecret-value"
    endpoint = FakeOpenAI(api_key=secret)
    with ServerThread(endpoint.protocol) as server:
        monkeypatch.delenv("IRGL_TEST_KEY", raising=False)
        with pytest.raises(ApiKeyMissing, match="IRGL_TEST_KEY"):
            HttpClient(settings(server.url, api_key_env="IRGL_TEST_KEY"))

        failure, _ = post(server.url)  # no key configured: the server refuses, not retried, the run would stop
        assert isinstance(failure, ServerRefused) and failure.error.status == 401

        monkeypatch.setenv("IRGL_TEST_KEY", secret)
        answer, _ = post(server.url, api_key_env="IRGL_TEST_KEY")
        assert answer["choices"][0]["finish_reason"] == "stop"

        monkeypatch.setenv("IRGL_TEST_KEY", "sk-wrong-" + secret)
        failure, _ = post(server.url, api_key_env="IRGL_TEST_KEY")
        client = HttpClient(settings(server.url, api_key_env="IRGL_TEST_KEY"))
    for text in (str(failure), failure.error.message, repr(client), repr(client.settings)):
        assert secret not in text


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError):
        HttpSettings("http://x/v1", max_attempts=0)
    with pytest.raises(ValueError):
        HttpSettings("http://x/v1", timeout_s=0)
    for url in ("localhost:8000/v1", "http:///v1", "ftp://host/v1"):
        with pytest.raises(ValueError, match="must look like http://host:port/v1"):
            HttpClient(HttpSettings(url))


def test_data_uris_are_spliced_into_the_json_unchanged():
    image = DataURI("image/jpeg", bytes(range(256)) * 40)
    payload = {"messages": [{"content": [{"type": "image_url", "image_url": {"url": image}},
                                         {"type": "text", "text": 'quotes " and \\ and é'}]}], "again": image}
    decoded = json.loads(dumps(payload))
    assert decoded["messages"][0]["content"][0]["image_url"]["url"] == str(image)
    assert decoded["again"] == str(image)
    assert decoded["messages"][0]["content"][1]["text"] == 'quotes " and \\ and é'
    assert json.loads(dumps({"plain": [1, 2]})) == {"plain": [1, 2]}
