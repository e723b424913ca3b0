"""examples/ai-chat/steps/chat_model.py: the fake model, the choice by environment, and the
OpenAI-compatible client streaming from a fake chat-completions endpoint on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai_chat_example import API_KEY, load, serve_fake_openai
from surge.server.serve import bind_socket

(chat_model,) = load("chat_model")


async def collect(model: Any, turns: list[dict[str, str]]) -> list[str]:
    return [piece async for piece in model.stream(turns)]


# --- the fake model -----------------------------------------------------------------------


async def test_fake_model_streams_its_deterministic_answer_word_by_word() -> None:
    model = chat_model.FakeChatModel(word_delay=0)
    turns = [{"role": "user", "content": "What is a stream?"}]
    pieces = await collect(model, turns)
    assert "".join(pieces) == chat_model.fake_answer("What is a stream?")
    assert len(pieces) > 20
    assert all(piece.strip() and " " not in piece.strip() for piece in pieces)
    assert await collect(model, turns) == pieces  # same prompt, same answer


async def test_fake_model_answers_the_last_user_turn() -> None:
    model = chat_model.FakeChatModel(word_delay=0)
    turns = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question"},
    ]
    answer = "".join(await collect(model, turns))
    assert answer.startswith("You said: “second question”.")


def test_fake_answers_differ_by_prompt_and_quote_long_prompts_shortened() -> None:
    long_prompt = " ".join(f"w{n}" for n in range(40))
    assert "w11 …" in chat_model.fake_answer(long_prompt)
    assert "w12" not in chat_model.fake_answer(long_prompt)
    answers = {chat_model.fake_answer(f"question {n}") for n in range(10)}
    assert len(answers) == 10


def test_no_openai_settings_picks_the_fake_with_the_configured_word_delay() -> None:
    assert chat_model.model_from_env({}) == chat_model.FakeChatModel(0.05)
    model = chat_model.model_from_env({"AI_CHAT_WORD_DELAY": "0.5", "OPENAI_BASE_URL": "x"})
    assert model == chat_model.FakeChatModel(0.5)


@pytest.mark.parametrize("delay", ["soon", "-1", "nan", "inf"])
def test_a_bad_word_delay_is_refused_with_its_name(delay: str) -> None:
    with pytest.raises(ValueError, match="AI_CHAT_WORD_DELAY"):
        chat_model.model_from_env({"AI_CHAT_WORD_DELAY": delay})


def test_openai_settings_pick_the_openai_model_without_showing_the_key() -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1/", "OPENAI_API_KEY": API_KEY}
    model = chat_model.model_from_env(env)
    assert isinstance(model, chat_model.OpenAIChatModel)
    assert (model.url, model.model) == ("http://127.0.0.1:1/v1/chat/completions", "gpt-4o-mini")
    assert API_KEY not in repr(model)
    assert chat_model.model_from_env({**env, "OPENAI_MODEL": "llama3.2"}).model == "llama3.2"


# --- completion chunks --------------------------------------------------------------------


def test_completion_delta_reads_the_text_and_tolerates_chunks_without_any() -> None:
    def chunk(delta: Any) -> str:
        return json.dumps({"choices": [{"index": 0, "delta": delta}]})

    assert chat_model.completion_delta(chunk({"content": "Hi"})) == "Hi"
    assert chat_model.completion_delta(chunk({"role": "assistant"})) == ""
    assert chat_model.completion_delta(chunk({"content": None})) == ""
    assert chat_model.completion_delta(json.dumps({"choices": []})) == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"error": {"message": "rate limited"}}', "rate limited"),
        ("not json", "unreadable"),
        ("[1, 2]", "unexpected"),
    ],
)
def test_completion_delta_raises_on_errors_and_garbage(data: str, message: str) -> None:
    with pytest.raises(chat_model.ChatModelError, match=message):
        chat_model.completion_delta(data)


async def test_openai_model_streams_the_deltas_until_done() -> None:
    async with serve_fake_openai() as fake:
        model = chat_model.OpenAIChatModel(fake.url, API_KEY, "tiny-model")
        turns = [{"role": "user", "content": "Say hello"}]
        pieces = await collect(model, turns)
    assert pieces == fake.pieces
    [request] = fake.requests
    assert request == {
        "authorization": f"Bearer {API_KEY}",
        "model": "tiny-model",
        "messages": [{"role": "system", "content": chat_model.SYSTEM_PROMPT}, *turns],
        "stream": True,
    }


async def test_openai_model_http_error_names_the_status_and_not_the_key() -> None:
    async with serve_fake_openai() as fake:
        model = chat_model.OpenAIChatModel(fake.url, "sk-wrong-key")
        with pytest.raises(chat_model.ChatModelError, match=r"HTTP 401.*Incorrect API key") as info:
            await collect(model, [{"role": "user", "content": "hi"}])
    assert "sk-wrong-key" not in str(info.value)


async def test_openai_model_error_event_mid_stream_raises_after_the_partial_text() -> None:
    async with serve_fake_openai() as fake:
        model = chat_model.OpenAIChatModel(fake.url, API_KEY, "broken")
        pieces: list[str] = []
        with pytest.raises(chat_model.ChatModelError, match="the model crashed"):
            async for piece in model.stream([{"role": "user", "content": "hi"}]):
                pieces.append(piece)
    assert pieces == ["partial"]


async def test_openai_model_unreachable_endpoint_is_a_chat_model_error() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    model = chat_model.OpenAIChatModel(f"http://127.0.0.1:{port}/v1", API_KEY, timeout=5)
    with pytest.raises(chat_model.ChatModelError, match="ConnectError"):
        await collect(model, [{"role": "user", "content": "hi"}])
