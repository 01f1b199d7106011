"""The official `openai` client against a live server on a random localhost port: completions and chat,
streaming and not, usage, stop strings, n, and greedy requests batched together versus alone."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
from openai import OpenAI
from serve_helpers import health, post

from testkit.chat import EXCHANGES

GREEDY = {"temperature": 0}


def client(server, api_key: str = "unused") -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=60)


def streamed_chat(api, **kw) -> tuple[str, str | None, object]:
    text, finish, usage = "", None, None
    for chunk in api.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, usage


def test_models_and_health(chat_server):
    models = client(chat_server).models.list()
    (card,) = models.data
    assert card.id == "chatty" and card.owned_by == "alm"
    assert card.model_extra["alm"]["chat"] is True and card.model_extra["alm"]["context"] == 64
    status = health(chat_server)
    assert status["status"] == "ok" and status["model"] == "chatty"
    assert (status["sequences"], status["slots"], status["capacity"]) == (0, 8, 40)


@pytest.mark.parametrize(("question", "answer"), EXCHANGES)
def test_chat_answers_as_fine_tuned_with_usage(chat_server, chat_served, question, answer):
    from alm.chat.format import render_prompt

    reply = client(chat_server).chat.completions.create(
        model="chatty", messages=[{"role": "user", "content": question}], **GREEDY
    )
    (choice,) = reply.choices
    assert choice.message.role == "assistant" and choice.message.content == answer
    assert choice.finish_reason == "stop"  # ended at <|end|>, which is not part of the reply
    prompt = render_prompt([{"role": "user", "content": question}], chat_served.tokenizer)
    answer_tokens = len(chat_served.tokenizer.encode(answer))
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == answer_tokens
    assert reply.usage.total_tokens == len(prompt) + answer_tokens
    assert reply.id.startswith("chatcmpl-") and reply.model == "chatty"


def test_streamed_chat_equals_the_whole_reply(chat_server):
    api = client(chat_server)
    messages = [{"role": "user", "content": EXCHANGES[2][0]}]
    whole = api.chat.completions.create(model="chatty", messages=messages, **GREEDY)
    text, finish, usage = streamed_chat(api, model="chatty", messages=messages, **GREEDY)
    assert text == whole.choices[0].message.content == EXCHANGES[2][1]
    assert finish == "stop" and usage.completion_tokens == whole.usage.completion_tokens


def test_streamed_text_equals_non_streamed_text_for_the_same_seed(base_server):
    api = client(base_server)
    kw = dict(model="base", prompt="ROMEO:", max_tokens=40, temperature=1.0, seed=1234)
    whole = api.completions.create(**kw)
    pieces, finish = [], None
    for chunk in api.completions.create(stream=True, **kw):
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert len(pieces) > 10  # it really streamed, a piece at a time
    assert "".join(pieces) == whole.choices[0].text
    assert finish == whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 40
    other = api.completions.create(**{**kw, "seed": 99})
    assert other.choices[0].text != whole.choices[0].text  # the seed matters


def test_stop_strings_cut_the_text_and_finish_with_stop(chat_server):
    api = client(chat_server)
    messages = [{"role": "user", "content": "Name a colour."}]  # "Blue, like the sea."
    reply = api.chat.completions.create(model="chatty", messages=messages, stop=[" like", "zzz"], **GREEDY)
    assert reply.choices[0].message.content == "Blue,"
    assert reply.choices[0].finish_reason == "stop"
    text, finish, _ = streamed_chat(api, model="chatty", messages=messages, stop=", like", **GREEDY)
    assert (text, finish) == ("Blue", "stop")


def test_max_tokens_ends_with_length(chat_server):
    reply = client(chat_server).chat.completions.create(
        model="chatty", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=2, **GREEDY
    )
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 2


def test_n_choices_are_batched_with_their_own_seeds(base_server):
    api = client(base_server)
    kw = dict(model="base", prompt="To be", max_tokens=12, temperature=1.0, seed=7)
    many = api.completions.create(n=3, **kw)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.usage.completion_tokens == 36
    assert many.choices[0].text == api.completions.create(**kw).choices[0].text  # choice i: seed + i
    assert many.choices[1].text == api.completions.create(**{**kw, "seed": 8}).choices[0].text
    assert len({c.text for c in many.choices}) == 3


def test_a_list_of_prompts_gets_a_choice_each(base_server):
    reply = post(base_server, "/v1/completions", {"prompt": ["a", "b"], "max_tokens": 3, **GREEDY})
    assert reply.status_code == 200
    body = reply.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 6


def test_eight_concurrent_greedy_requests_match_each_alone(base_server):
    prompts = [f"{word} " * (i + 1) for i, word in enumerate("abcdefgh")]

    def complete(prompt: str) -> str:
        reply = client(base_server).completions.create(model="base", prompt=prompt, max_tokens=24, **GREEDY)
        return reply.choices[0].text

    alone = [complete(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(complete, prompts))
    assert together == alone
    assert len(set(alone)) > 1
    assert health(base_server)["busiest_batch"] > 1  # they were decoded together


def test_the_chat_page_is_served_with_its_assets(chat_server):
    page = httpx.get(chat_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="chat.js"' in page.text and "http" not in page.text.replace(
        "http-equiv", ""
    )  # nothing remote
    for asset, kind in (("chat.js", "javascript"), ("chat.css", "css")):
        response = httpx.get(f"{chat_server.url}/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
