"""The explorer's Starlette app: the page (static files), a proxy to the service's public API,
and the bundled examples. Nothing but the page itself is served to a caller whose key the
service refuses: every API route forwards the caller's ``Authorization`` header upstream and
answers with what the service answered (the examples after a forwarded ``/ping``)."""

from __future__ import annotations

import contextlib
import json
import pathlib

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .config import ExplorerConfig
from .examples import load_examples, valid_model_name
from .upstream import Answer, Upstream, error

STATIC = pathlib.Path(__file__).resolve().parent / "static"
# The page loads only its own files; answers are never cached (they depend on the key).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _respond(answer: Answer) -> Response:
    return Response(answer.body, answer.status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **SECURITY_HEADERS})


def _auth(request: Request) -> str | None:
    return request.headers.get("authorization") or None


def _model(request: Request) -> str | None:
    name = request.path_params["model"]
    return name if valid_model_name(name) else None


def create_app(config: ExplorerConfig, **upstream_options) -> Starlette:
    """``upstream_options`` go to ``Upstream`` (tests pass a fake TorchServe transport and a
    fake gateway client)."""
    upstream = Upstream(config, **upstream_options)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    async def session(request: Request) -> Response:
        """200 when the service accepts the caller's key (or needs none), else 401."""
        answer = await upstream.ping(_auth(request))
        if not answer.ok:
            return _respond(answer)
        body = {"status": "ok", "key_sent": _auth(request) is not None,
                "gateway": config.gateway is not None}
        return _respond(Answer(200, json.dumps(body).encode()))

    async def models(request: Request) -> Response:
        return _respond(await upstream.models(_auth(request)))

    async def spec(request: Request) -> Response:
        model = _model(request)
        if model is None:
            return _respond(error(400, "INVALID_INPUT", "not a model name", "model"))
        return _respond(await upstream.spec(model, _auth(request)))

    async def examples(request: Request) -> Response:
        model = _model(request)
        if model is None:
            return _respond(error(400, "INVALID_INPUT", "not a model name", "model"))
        check = await upstream.ping(_auth(request))
        if not check.ok:
            return _respond(check)
        data = load_examples(config.examples_dir, model)
        if data is None:
            data = {"model": model, "truth": "", "examples": []}
        return _respond(Answer(200, json.dumps(data).encode()))

    def forwarder(kind: str):
        async def forward(request: Request) -> Response:
            model = _model(request)
            if model is None:
                return _respond(error(400, "INVALID_INPUT", "not a model name", "model"))
            body = await request.body()
            if len(body) > config.max_body_bytes:
                return _respond(error(413, "LIMIT_EXCEEDED", f"{len(body)} bytes is above the "
                                      f"explorer's limit {config.max_body_bytes}", "body"))
            return _respond(await upstream.forward(kind, model, body, _auth(request)))
        return forward

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            await upstream.close()

    routes = [
        Route("/", index),
        Route("/api/session", session),
        Route("/api/models", models),
        Route("/api/models/{model}", spec),
        Route("/api/models/{model}/examples", examples),
        Route("/api/models/{model}/predict", forwarder("predictions"), methods=["POST"]),
        Route("/api/models/{model}/explain", forwarder("explanations"), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = ([Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))]
                  if config.allowed_hosts else [])
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.config = config
    return app
