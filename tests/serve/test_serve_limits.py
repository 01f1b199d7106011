"""What the server refuses, and how: 401 without the key, 400 (OpenAI error objects) for bad requests, 413 for
a body past the limit, 429 with Retry-After when the queue is full; and a client that disconnects mid-stream
frees its slot."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from serve_helpers import health, post, serving, sse_events

HI = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
LONG = {"prompt": "x", "max_tokens": 50_000, "temperature": 0, "stream": True}  # runs until cancelled


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_an_api_key_is_required_on_v1_when_set(chat_served):
    with serving(chat_served, api_key="sesame") as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic sesame"}):
            response = post(server, "/v1/chat/completions", HI, headers=headers)
            assert response.status_code == 401, headers
            assert error_of(response)["code"] == "invalid_api_key"
        assert httpx.get(server.url + "/v1/models").status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=server.url + "/v1", api_key="sesame", max_retries=0)
        reply = ok.chat.completions.create(model="chatty", messages=HI["messages"], temperature=0)
        assert reply.choices[0].message.content == "Hello there!"
        assert httpx.get(server.url + "/health").status_code == 200  # the page and health need no key
        assert httpx.get(server.url + "/").status_code == 200


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        ({"messages": "Hi"}, "messages", "valid list"),
        ({**HI, "temperature": "hot"}, "temperature", "valid number"),
        ({**HI, "max_tokens": 1.5}, "max_tokens", "valid integer"),
        ({**HI, "stream": "yes"}, "stream", "valid boolean"),
        ({**HI, "temprature": 0.5}, "temprature", "unknown field"),
        ({**HI, "temperature": -1}, "temperature", "must be >= 0"),
        ({**HI, "top_p": 0}, "top_p", "(0, 1]"),
        ({**HI, "max_tokens": 5000}, "max_tokens", "above this server's limit of 2048"),
        ({**HI, "n": 0}, "n", "greater than or equal to 1"),
        ({**HI, "n": 9}, "n", "more than this server decodes at once"),
        ({**HI, "presence_penalty": 0.5}, "presence_penalty", "not supported"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages.0.role", "system"),
        ({"messages": [{"role": "user", "content": "Hi " * 100}]}, "messages", "context is 64 tokens"),
        ({"messages": []}, "messages", "at least 1"),
    ],
)
def test_bad_chat_requests_are_400_with_an_error_object(chat_server, body, param, needle):
    response = post(chat_server, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert needle in error["message"], error["message"]


def test_neutral_values_of_unsupported_fields_are_accepted(chat_server):
    body = {**HI, "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": False, "user": "me"}
    assert post(chat_server, "/v1/chat/completions", body).status_code == 200


def test_a_prompt_longer_than_the_context_is_400(chat_server):
    response = post(chat_server, "/v1/completions", {"prompt": "To be or not to be " * 40})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded" and "context is 64 tokens" in error["message"]


def test_a_base_model_refuses_chat_with_a_clear_400(base_server):
    response = post(base_server, "/v1/chat/completions", HI)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "chat_not_supported"
    assert "not fine-tuned for chat" in error["message"] and "/v1/completions" in error["message"]
    assert "alm sft base --data" in error["message"]


def test_a_body_past_the_limit_is_413(chat_server):
    response = post(chat_server, "/v1/completions", {"prompt": "x" * (1 << 20)})
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_unknown_paths_and_methods_are_error_objects(chat_server):
    assert error_of(httpx.get(chat_server.url + "/v1/nothing"))["type"] == "not_found_error"
    assert httpx.get(chat_server.url + "/v1/completions").status_code == 405
    assert httpx.get(chat_server.url + "/v1/models/other").status_code == 404


def stream_until_cancelled(server, started: threading.Event, stop: threading.Event) -> None:
    with httpx.stream("POST", server.url + "/v1/completions", json=LONG, timeout=60) as response:
        assert response.status_code == 200
        for _ in sse_events(response.iter_lines()):
            started.set()
            if stop.is_set():
                return  # leaving the block closes the connection mid-stream


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_full_queue_answers_429_with_retry_after(base_served):
    with serving(base_served, max_concurrency=1, max_queue=1, max_tokens_limit=100_000) as server:
        stop, started = threading.Event(), threading.Event()
        clients = [
            threading.Thread(target=stream_until_cancelled, args=(server, started, stop)) for _ in "ab"
        ]
        for thread in clients:
            thread.start()
        assert started.wait(30)  # one decoding (whichever came first), one waiting for the slot
        assert wait_for(lambda: health(server)["sequences"] == 2, timeout=30), health(server)
        response = post(server, "/v1/completions", {"prompt": "x", "max_tokens": 4})
        assert response.status_code == 429, (response.text, health(server))
        assert response.headers["retry-after"] == "1"
        assert error_of(response)["code"] == "queue_full"
        stop.set()
        for thread in clients:
            thread.join(30)
        assert wait_for(lambda: health(server)["sequences"] == 0)
        assert post(server, "/v1/completions", {"prompt": "x", "max_tokens": 4}).status_code == 200


def test_a_client_that_disconnects_mid_stream_frees_its_slot(base_served):
    with serving(base_served, max_concurrency=1, max_queue=0, max_tokens_limit=100_000) as server:
        stop, started = threading.Event(), threading.Event()
        stop.set()  # leave after the first event
        stream_until_cancelled(server, started, stop)
        assert started.is_set()
        assert wait_for(lambda: health(server)["sequences"] == 0, timeout=15)  # not 50,000 tokens later
        reply = post(server, "/v1/completions", {"prompt": "x", "max_tokens": 4})  # the one slot is free
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 4
