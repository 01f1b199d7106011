"""The FastAPI application: the OpenAI-compatible endpoints, the web chat page, auth, limits and errors.

    GET  /                      the chat page (static files under alm/serve/static, no build step, no CDN)
    GET  /health                {"status": "ok" | "draining", ...}; no key needed
    GET  /v1/models             the one model served
    POST /v1/completions        text continuation
    POST /v1/chat/completions   a reply to messages (chat runs only)

Every error is an OpenAI error object. Handlers run on the event loop and never touch the model: they check the
request, hand a `Ticket` to the scheduler thread and relay its updates, as server-sent events when `stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from alm.errors import UsageError
from alm.sample.text import check_text
from alm.serve.config import ServeConfig
from alm.serve.model import ServedModel
from alm.serve.protocol import (
    FINISH_REASONS,
    ApiError,
    ChatRequest,
    CompletionRequest,
    Shape,
    bad_request,
    error_body,
    parse_body,
    sampling,
    sse,
    usage,
)
from alm.serve.scheduler import Draining, Job, Overloaded, Scheduler, Ticket, Update

STATIC = {
    "/": ("index.html", "text/html"),
    "/chat.js": ("chat.js", "text/javascript"),
    "/chat.css": ("chat.css", "text/css"),
}
# The page loads nothing from elsewhere; saying so lets the browser refuse anything injected.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
DISCONNECT_POLL_SECONDS = 0.5  # how often a non-streaming request checks that its client is still there


def create_app(served: ServedModel, scheduler: Scheduler, cfg: ServeConfig) -> FastAPI:
    app = FastAPI(title="alm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served, app.state.scheduler, app.state.cfg = served, scheduler, cfg

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(error_body(message, type=kind), status_code=exc.status_code)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if cfg.api_key and request.url.path.startswith("/v1/") and not _authorized(request, cfg.api_key):
            body = error_body(
                "a valid API key is required: send `Authorization: Bearer KEY`",
                type="invalid_request_error",
                code="invalid_api_key",
            )
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    for path, (name, media_type) in STATIC.items():
        content = (files("alm.serve") / "static" / name).read_bytes()
        app.add_api_route(path, _static(content, media_type), methods=["GET"], include_in_schema=False)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = {
            "status": "draining" if scheduler.draining else "ok",
            "model": served.name,
            "sequences": scheduler.held,
            "slots": cfg.max_concurrency,
            "capacity": cfg.capacity,
            "busiest_batch": scheduler.busiest,
        }
        return JSONResponse(body, status_code=503 if scheduler.draining else 200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [served.card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != served.name:
            raise ApiError(
                404,
                f"model {model_id!r} is not served here; this server serves {served.name!r}",
                type="not_found_error",
                param="model",
                code="model_not_found",
            )
        return served.card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_body(await _read_body(request, cfg.max_body_bytes), CompletionRequest)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            raise bad_request("prompt must not be an empty list", "prompt")
        counts = [_prompt_tokens(served, text, f"prompt[{i}]") for i, text in enumerate(prompts)]
        cfgs = sampling(body, max_tokens_limit=cfg.max_tokens_limit).per_sample(body.n)
        jobs = [Job(text, c) for text in prompts for c in cfgs]
        return await _respond(request, "completion", body, jobs, sum(counts))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = parse_body(await _read_body(request, cfg.max_body_bytes), ChatRequest)
        if served.chat is None:
            raise bad_request(served.chat_refusal, "messages", "chat_not_supported")
        from alm.chat.format import render_prompt

        messages = body.message_dicts()
        for i, message in enumerate(messages):
            _check_text(message["content"], f"messages[{i}].content")
        try:
            ids = render_prompt(messages, served.tokenizer)
        except UsageError as exc:
            raise bad_request(exc.message, "messages") from None
        _check_length(served, len(ids), "messages")
        cfgs = sampling(body, max_tokens_limit=cfg.max_tokens_limit).per_sample(body.n)
        jobs = [Job(ids, c, () if c.ignore_eos else served.chat.stop_ids) for c in cfgs]
        return await _respond(request, "chat", body, jobs, len(ids))

    async def _respond(
        request: Request, kind: Any, body: Any, jobs: list[Job], prompt_tokens: int
    ) -> Response:
        if len(jobs) > cfg.max_concurrency:
            raise bad_request(
                f"{len(jobs)} choices are more than this server decodes at once ({cfg.max_concurrency}); "
                "lower n",
                "n",
            )
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[Update] = asyncio.Queue()
        ticket = Ticket(jobs, lambda update: _post(loop, updates, update))
        try:
            scheduler.submit(ticket)
        except Overloaded as exc:
            raise ApiError(
                429,
                f"{exc.message}; retry later",
                type="server_overloaded",
                code="queue_full",
                headers={"Retry-After": str(cfg.retry_after)},
            ) from None
        except Draining as exc:
            raise ApiError(
                503,
                exc.message,
                type="server_unavailable",
                code="shutting_down",
                headers={"Retry-After": str(cfg.retry_after)},
            ) from None
        shape = Shape.new(kind, served.name, int(time.time()))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _stream(shape, ticket, updates, prompt_tokens, include_usage)
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        return await _complete(request, shape, ticket, updates, prompt_tokens)

    return app


def _static(content: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def page() -> Response:
        return Response(content, media_type=media_type, headers=PAGE_HEADERS)

    return page


def _authorized(request: Request, key: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _post(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Update], update: Update) -> None:
    """Hand an update from the scheduler thread to the request's event loop (gone at shutdown: dropped)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, update)


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = ApiError(
        413, f"the request body is larger than this server's limit of {limit} bytes", code="request_too_large"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _check_text(text: str, param: str) -> None:
    try:
        check_text(text, param)
    except UsageError as exc:
        raise bad_request(exc.message, param) from None


def _check_length(served: ServedModel, tokens: int, param: str) -> None:
    if tokens > served.context:
        raise bad_request(
            f"{param} is {tokens} tokens; this model's context is {served.context} tokens",
            param,
            "context_length_exceeded",
        )


def _prompt_tokens(served: ServedModel, text: str, param: str) -> int:
    """Tokens the prompt is fed as (an empty prompt starts a document: one token); a 400 past the context."""
    _check_text(text, param)
    tokens = len(served.tokenizer.encode(text)) if text else 1
    _check_length(served, tokens, param)
    return tokens


async def _stream(
    shape: Shape, ticket: Ticket, updates: asyncio.Queue[Update], prompt_tokens: int, include_usage: bool
) -> AsyncIterator[bytes]:
    """The response as server-sent events; a client that goes away cancels the ticket (the `finally`)."""
    try:
        if shape.kind == "chat":
            for index in range(len(ticket.jobs)):
                yield sse(shape.chunk(index, "", role=True))
        ended, completion_tokens = 0, 0
        while ended < len(ticket.jobs):
            update = await updates.get()
            if update.error is not None:
                yield sse(error_body(update.error, type="server_error"))
                return
            if update.text:
                yield sse(shape.chunk(update.index, update.text))
            if update.ended:
                ended += 1
                completion_tokens += update.info.new_tokens if update.info else 0
                yield sse(shape.chunk(update.index, None, FINISH_REASONS[update.finish or "cancelled"]))
        if include_usage:
            yield sse(shape.usage_chunk(usage(prompt_tokens, completion_tokens)))
        yield sse("[DONE]")
    finally:
        ticket.cancel()


async def _complete(
    request: Request, shape: Shape, ticket: Ticket, updates: asyncio.Queue[Update], prompt_tokens: int
) -> Response:
    n = len(ticket.jobs)
    texts, finishes, completion_tokens = [""] * n, [""] * n, 0
    try:
        ended = 0
        while ended < n:
            try:
                update = await asyncio.wait_for(updates.get(), DISCONNECT_POLL_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody to answer; the `finally` frees the slots
                continue
            if update.error is not None:
                raise ApiError(500, update.error, type="server_error")
            texts[update.index] += update.text
            if update.ended:
                ended += 1
                finishes[update.index] = FINISH_REASONS[update.finish or "cancelled"]
                completion_tokens += update.info.new_tokens if update.info else 0
    finally:
        ticket.cancel()
    return JSONResponse(shape.response(texts, finishes, usage(prompt_tokens, completion_tokens)))


__all__ = ["create_app"]
