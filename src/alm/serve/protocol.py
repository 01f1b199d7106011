"""The OpenAI wire format: request bodies in, response objects and stream chunks out, errors as objects.

Request fields are checked strictly (a wrong type or an unknown field is a 400 naming it, as OpenAI does). The
sampling fields come from alm's one options spec (`alm.sample.options.SAMPLING_OPTIONS`): OpenAI's names where
it has one (`max_tokens` for max_new_tokens; `temperature`, `top_p`, `stop`, `seed`) and alm's own names for
the rest (`top_k`, `min_p`, `repetition_penalty`, `greedy`, `ignore_eos`). Absent fields take alm's defaults
(temperature 0.8, as `alm sample`). OpenAI fields alm does not implement are accepted at their neutral value
only (`presence_penalty: 0`, `logprobs: null`, …) and refused otherwise, never silently ignored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from alm.config import from_dict
from alm.errors import ConfigError
from alm.sample.options import NUM_SAMPLES, SAMPLING_OPTIONS, SamplingConfig

Kind = Literal["completion", "chat"]
# alm's stop reasons as OpenAI finish reasons; "abort": the server stopped it (shutdown), as vLLM says.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "abort"}
API_NAMES = {"max_new_tokens": "max_tokens"}  # SamplingConfig field -> request field, where OpenAI names it
MAX_STOP_STRINGS = 16
# OpenAI fields alm does not implement, with the values that mean "off".
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "response_format": (None, {"type": "text"}),
    "parallel_tool_calls": (None,),
    "tools": (None, []),
    "tool_choice": (None, "none"),
}


class ApiError(Exception):
    """An error response: `status` and OpenAI's error object (`message`, `type`, `param`, `code`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


# -- requests --------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self, index: int) -> str:
        """The content as text; OpenAI's list of parts is accepted when every part is text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(
                    f"messages[{index}].content: only text parts are supported", f"messages[{index}].content"
                )
            texts.append(part["text"])
        return "".join(texts)


def _sampling_fields() -> dict[str, Any]:
    """The request fields of the sampling spec, each optional (None: alm's default)."""
    fields: dict[str, Any] = {}
    for opt in SAMPLING_OPTIONS:
        value_type: Any = str | list[str] if opt.repeatable else opt.type
        fields[API_NAMES.get(opt.name, opt.name)] = (value_type | None, None)
    return fields


_COMMON: dict[str, Any] = {
    **_sampling_fields(),
    "model": (str | None, None),
    "n": (int, Field(NUM_SAMPLES.default, ge=1)),
    "stream": (bool, False),
    "stream_options": (StreamOptions | None, None),
    "user": (str | None, None),
    **{name: (Any, None) for name in NEUTRAL},
}
_Sampled: type[_Strict] = create_model("_Sampled", __base__=_Strict, **_COMMON)


class CompletionRequest(_Sampled):
    prompt: str | list[str]


class ChatRequest(_Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None  # OpenAI's newer name for max_tokens

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text(i)} for i, m in enumerate(self.messages)]


def parse_body(raw: bytes, cls: type[_Strict]) -> Any:
    """The request object, or a 400 naming the first problem (not JSON, a wrong type, an unknown field)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        if error["type"] == "extra_forbidden":
            message = f"unknown field {param!r}"
        else:
            message = f"{param}: {error['msg']}" if param else error["msg"]
        raise bad_request(message, param) from None


def sampling(request: Any, *, max_tokens_limit: int) -> SamplingConfig:
    """The request's SamplingConfig; a value alm refuses is a 400 naming the request field."""
    for name, neutral in NEUTRAL.items():
        value = getattr(request, name)
        if value is not None and not any(value == ok and type(value) is type(ok) for ok in neutral):
            raise bad_request(f"{name} is not supported by this server", name, "unsupported_parameter")
    values: dict[str, Any] = {}
    for opt in SAMPLING_OPTIONS:
        value = getattr(request, API_NAMES.get(opt.name, opt.name))
        if value is not None:
            values[opt.name] = (value,) if opt.repeatable and isinstance(value, str) else value
    if isinstance(request, ChatRequest) and request.max_completion_tokens is not None:
        values["max_new_tokens"] = request.max_completion_tokens
    values.setdefault("max_new_tokens", min(SamplingConfig.max_new_tokens, max_tokens_limit))
    if values["max_new_tokens"] > max_tokens_limit:
        raise bad_request(
            f"max_tokens {values['max_new_tokens']} is above this server's limit of {max_tokens_limit}",
            "max_tokens",
        )
    if len(values.get("stop", ())) > MAX_STOP_STRINGS:
        raise bad_request(f"at most {MAX_STOP_STRINGS} stop strings", "stop")
    try:
        return from_dict(SamplingConfig, values)
    except ConfigError as exc:
        param = API_NAMES.get(exc.key, exc.key)
        raise bad_request(f"{param}: {exc.detail}", param) from None


# -- responses -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """How one kind of response is spelt: ids, object names, and a choice's text field."""

    kind: Kind
    model: str
    id: str
    created: int

    @classmethod
    def new(cls, kind: Kind, model: str, created: int) -> Shape:
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        return cls(kind, model, f"{prefix}-{uuid.uuid4().hex[:24]}", created)

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def response(self, texts: Sequence[str], finishes: Sequence[str], usage: dict[str, int]) -> dict:
        choices = []
        for index, (text, finish) in enumerate(zip(texts, finishes, strict=True)):
            if self.kind == "chat":
                choice = {"index": index, "message": {"role": "assistant", "content": text}}
            else:
                choice = {"index": index, "text": text}
            choices.append({**choice, "logprobs": None, "finish_reason": finish})
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        return {**self._envelope(obj, choices), "usage": usage}

    def chunk(self, index: int, text: str | None, finish: str | None = None, *, role: bool = False) -> dict:
        """A stream chunk: a piece of choice `index`'s text, or (text None) its finish reason."""
        if self.kind == "chat":
            delta: dict[str, str] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"index": index, "text": text or ""}
        choice.update(logprobs=None, finish_reason=finish)
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return self._envelope(obj, [choice])

    def usage_chunk(self, usage: dict[str, int]) -> dict:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {**self._envelope(obj, []), "usage": usage}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: {json}` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


__all__ = [
    "FINISH_REASONS",
    "ApiError",
    "ChatRequest",
    "CompletionRequest",
    "Shape",
    "bad_request",
    "error_body",
    "parse_body",
    "sampling",
    "sse",
    "usage",
]
