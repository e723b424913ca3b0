"""The models that write the replies: a deterministic fake, or any OpenAI-compatible API.

``model_from_env()`` picks one per reply:

- ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` set: ``OpenAIChatModel``, chat completions with
  ``stream: true`` read as server-sent events with httpx (``OPENAI_MODEL``, default
  ``gpt-4o-mini``). Works with OpenAI, Ollama, vLLM, LM Studio, llama.cpp's server, OpenRouter...
- otherwise ``FakeChatModel``: a canned answer derived from the prompt, one word every
  ``AI_CHAT_WORD_DELAY`` seconds (default 0.05). Same prompt, same answer: tests rely on it.

A model is anything with ``stream(turns) -> AsyncIterator[str]`` yielding pieces of the reply.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

import orjson

from steps.sse import SSEParser

__all__ = [
    "DEFAULT_OPENAI_MODEL",
    "DEFAULT_WORD_DELAY",
    "ChatModel",
    "ChatModelError",
    "ChatTurn",
    "FakeChatModel",
    "OpenAIChatModel",
    "completion_delta",
    "fake_answer",
    "model_from_env",
]

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_WORD_DELAY = 0.05
SYSTEM_PROMPT = "You are a helpful assistant. Answer concisely."
_ERROR_BODY_CHARS = 300  # of an error response quoted in the exception


class ChatTurn(TypedDict):
    """One message of the conversation, as chat completions take it."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """Writes a reply to the conversation ``turns`` (the last one is the user's)."""

    def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the reply piece by piece (words, tokens); their concatenation is the reply."""
        ...


class ChatModelError(Exception):
    """The model failed (HTTP error, error event, unreadable stream); the reply is retried."""


# --- the fake -----------------------------------------------------------------------------

_CLOSINGS = (
    "Every word you see is one write to a single stream item, pushed to every open page.",
    "The reply lives in one stream item that grows with each word, on every open page.",
    "Each word is a new version of the same stream item, sent to everyone watching.",
)
_WORD = re.compile(r"\S+\s*")
_PROMPT_WORDS = 12


def fake_answer(prompt: str) -> str:
    """The fake model's whole answer to ``prompt``: deterministic, and different per prompt."""
    words = prompt.split()
    quoted = " ".join(words[:_PROMPT_WORDS]) + (" …" if len(words) > _PROMPT_WORDS else "")
    closing = _CLOSINGS[zlib.crc32(prompt.encode()) % len(_CLOSINGS)]
    return (
        f"You said: “{quoted}”. I am the fake model of the ai-chat example, answering word by "
        f"word so you can watch the reply arrive. {closing} Set OPENAI_BASE_URL and "
        "OPENAI_API_KEY to talk to a real model."
    )


@dataclass(frozen=True, slots=True)
class FakeChatModel:
    """Streams ``fake_answer`` of the last user turn, one word every ``word_delay`` seconds."""

    word_delay: float = DEFAULT_WORD_DELAY

    async def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the answer word by word (each word with its trailing space)."""
        prompt = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
        for word in _WORD.findall(fake_answer(prompt)):
            await asyncio.sleep(self.word_delay)
            yield word


# --- OpenAI-compatible chat completions ---------------------------------------------------


def completion_delta(data: str) -> str:
    """The text of one streamed chat-completion chunk (the ``data`` of one SSE event).

    Chunks without text (the first one carries only the role, the last one the finish reason)
    give ``""``.

    Raises:
        ChatModelError: the chunk is not JSON, or is an error object.
    """
    try:
        chunk: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ChatModelError(f"unreadable chunk from the model: {data[:80]!r}") from exc
    if not isinstance(chunk, dict):
        raise ChatModelError(f"unexpected chunk from the model: {data[:80]!r}")
    error = chunk.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ChatModelError(f"the model reported an error: {message}")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


class OpenAIChatModel:
    """Chat completions of an OpenAI-compatible API, streamed (``stream: true``) with httpx."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str = DEFAULT_OPENAI_MODEL,
        *,
        timeout: float = 60.0,
        system_prompt: str | None = SYSTEM_PROMPT,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.system_prompt = system_prompt
        self._api_key = api_key  # never logged, never in an error message

    def __repr__(self) -> str:
        return f"OpenAIChatModel(url={self.url!r}, model={self.model!r})"

    def request_body(self, turns: Sequence[ChatTurn]) -> dict[str, Any]:
        """The JSON body of the chat-completions request."""
        messages: list[ChatTurn] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.extend(turns)
        return {"model": self.model, "messages": messages, "stream": True}

    async def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the text deltas as the API sends them; stops at ``data: [DONE]``.

        Raises:
            ChatModelError: an HTTP error status, an error event or a broken stream.
        """
        import httpx2  # lazily: the fake model needs no HTTP client

        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "text/event-stream"}
        timeout = httpx2.Timeout(self.timeout, connect=10.0)
        try:
            async with (
                httpx2.AsyncClient(timeout=timeout) as client,
                client.stream(
                    "POST", self.url, json=self.request_body(turns), headers=headers
                ) as response,
            ):
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", errors="replace")
                    raise ChatModelError(
                        f"{self.url} answered HTTP {response.status_code}: "
                        f"{body[:_ERROR_BODY_CHARS]}"
                    )
                parser = SSEParser()
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        if event.data == "[DONE]":
                            return
                        delta = completion_delta(event.data)
                        if delta:
                            yield delta
                for event in parser.close():
                    if event.data != "[DONE]" and (delta := completion_delta(event.data)):
                        yield delta
        except httpx2.HTTPError as exc:
            raise ChatModelError(f"{self.url}: {type(exc).__name__}: {exc}") from exc


def model_from_env(env: Mapping[str, str] | None = None) -> ChatModel:
    """The model the environment asks for (see the module docstring).

    Raises:
        ValueError: ``AI_CHAT_WORD_DELAY`` is not a number of seconds >= 0.
    """
    env = os.environ if env is None else env
    base_url, api_key = env.get("OPENAI_BASE_URL"), env.get("OPENAI_API_KEY")
    if base_url and api_key:
        return OpenAIChatModel(base_url, api_key, env.get("OPENAI_MODEL") or DEFAULT_OPENAI_MODEL)
    raw = env.get("AI_CHAT_WORD_DELAY", "")
    try:
        delay = float(raw) if raw else DEFAULT_WORD_DELAY
    except ValueError:
        delay = -1.0
    if not (math.isfinite(delay) and delay >= 0):
        raise ValueError(f"AI_CHAT_WORD_DELAY must be a number of seconds >= 0, got {raw!r}")
    return FakeChatModel(word_delay=delay)
