"""`alm serve`: one trained model behind an OpenAI-compatible HTTP API and a web chat page.

    config     ServeConfig: address, key, concurrency, queue and request limits, drain bound (no torch)
    model      ServedModel: the loaded model, its name, and whether it may chat
    protocol   the OpenAI wire format: strict request parsing, sampling fields, responses, stream chunks
    scheduler  the one thread that drives the generation engine (continuous batching), with a bounded queue
    app        the FastAPI app: endpoints, auth, limits, errors, server-sent events, the static page
    server     uvicorn on a bound socket, with a graceful drain on Ctrl+C/SIGTERM
    static/    the chat page: plain HTML, CSS and JavaScript, no build step, nothing from a CDN

FastAPI and uvicorn are the optional `serve` extra (`pip install 'alm[serve]'`); `alm serve` says so when they
are missing. Nothing here is imported by the layers below.
"""
