"""The canvas web app (Starlette): the page, and an HTTP API beside it.

    GET  /                 the page (static/index.html; plain HTML + JS, no build step)
    GET  /labels           the served model's palette, size and limits as JSON (?model=)
    POST /render           label PNG body -> photo PNG (?model=label2photo&seed=N&format=png|jpeg); with
                           Content-Type application/octet-stream the body is raw uint8 ids
                           (row-major, exactly H*W bytes: what the page sends, no PNG coding)
    POST /upload           a label PNG of any size (ids or colors; ?nearest=1 snaps anti-aliased
                           colors) -> the palette-color PNG at the model's size, for the page to paint on
    GET  /examples         the starting layouts; GET /examples/NAME.png one of them
    GET  /random?seed=N    a random street: the label PNG the served random_layout model draws for N
                           (404 where the server has no layout model)
    GET  /health           200 when Triton is ready, 503 when not

Errors are one-line JSON, ``{"error": "..."}``: 400 for a bad label map, 413 over the size limits, 404
for an unknown model or layout, 504 when Triton does not answer in time, 503 while it cannot be
reached (the app keeps serving and recovers by itself when the server returns). Blocking gRPC calls
run in Starlette's thread pool. A photo's answer carries ``Server-Timing`` (read: the body; check:
decoding the label map; triton: the gRPC call; encode: the photo's PNG; total), which the page and
``benchmarks/canvas_latency.py`` read to say where a render's time goes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import CityserveError, ConfigError, LabelError
from ..inference import RequestTimeout, ServerError, ServerUnavailable
from .bridge import ENSEMBLE, RAW_IDS, TooLarge, TritonBridge

STATIC = Path(__file__).with_name("static")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _status_for(exc: Exception, bridge: TritonBridge) -> JSONResponse:
    """An exception from the bridge -> the HTTP answer the page and curl users read."""
    if isinstance(exc, ServerUnavailable):
        return error(503, f"Triton server at {bridge.url} is unreachable or not ready ({exc}); retrying helps")
    if isinstance(exc, RequestTimeout):
        return error(504, f"Triton server at {bridge.url}: {exc}")
    if isinstance(exc, TooLarge):
        return error(413, str(exc))
    if isinstance(exc, ConfigError):
        return error(404, str(exc))
    if isinstance(exc, (LabelError, ServerError)):
        return error(400, str(exc))
    return error(500, f"{type(exc).__name__}: {exc}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is {declared} bytes, over the served model's maximum of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is over the served model's maximum of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _seed(request: Request) -> Optional[int]:
    raw = request.query_params.get("seed", "")
    if raw == "":
        return None
    if not raw.isdigit() or int(raw) >= 2**32:
        raise LabelError(f"seed must be an integer 0..{2**32 - 1}, not {raw!r}")
    return int(raw)


def create_app(bridge: TritonBridge, examples_dir: Optional[Path] = None) -> Starlette:
    """The app for one bridge; ``examples_dir``: the label PNGs offered as starting layouts."""
    examples = {}
    if examples_dir is not None and Path(examples_dir).is_dir():
        examples = {
            p.stem: p
            for p in sorted(Path(examples_dir).glob("*.png"))
            if "instance" not in p.name.lower() and "leftimg8bit" not in p.name.lower()
        }

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def labels(request: Request) -> Response:
        try:
            info = await run_in_threadpool(bridge.info, request.query_params.get("model", ENSEMBLE))
        except CityserveError as e:
            return _status_for(e, bridge)
        return JSONResponse(info.as_json())

    async def render(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            model = request.query_params.get("model", ENSEMBLE)
            seed = _seed(request)
            info = bridge.known_info(model) or await run_in_threadpool(bridge.info, model)
            data = await _read_body(request, info.max_bytes)
            raw = request.headers.get("content-type", "").split(";")[0].strip().lower() == RAW_IDS
            fmt = request.query_params.get("format", "png")
            t1 = time.perf_counter()
            photo, media, times = await run_in_threadpool(bridge.render_timed, data, model, seed, raw, fmt)
        except CityserveError as e:
            return _status_for(e, bridge)
        t2 = time.perf_counter()
        ms, read, total = (t2 - t1) * 1000, (t1 - t0) * 1000, (t2 - t0) * 1000
        timing = f"read;dur={read:.1f}, {times.header()}, total;dur={total:.1f}"
        return Response(
            photo,
            media_type=media,
            headers={"X-Render-Ms": f"{ms:.1f}", "Cache-Control": "no-store", "Server-Timing": timing},
        )

    async def upload(request: Request) -> Response:
        try:
            info = await run_in_threadpool(bridge.info, request.query_params.get("model", ENSEMBLE))
            data = await _read_body(request, info.max_bytes)
            nearest = request.query_params.get("nearest", "0") in ("1", "true", "yes")
            ids, resized = await run_in_threadpool(bridge.fit_upload, data, info, nearest)
            png = await run_in_threadpool(bridge.colors_png, ids, info)
        except CityserveError as e:
            return _status_for(e, bridge)
        return Response(png, media_type="image/png", headers={"X-Resized": "1" if resized else "0"})

    async def example_list(request: Request) -> Response:
        return JSONResponse({"examples": [f"{name}.png" for name in examples]})

    async def example(request: Request) -> Response:
        path = examples.get(request.path_params["name"])
        if path is None:  # only the listed files: the name from the URL never becomes a path
            return error(404, f"no starting layout named {request.path_params['name']!r}")
        return FileResponse(path, media_type="image/png")

    async def random_street(request: Request) -> Response:
        try:
            seed = _seed(request)
            png = await run_in_threadpool(bridge.random_layout, 0 if seed is None else seed)
        except CityserveError as e:
            return _status_for(e, bridge)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        ready = await run_in_threadpool(bridge.ready)
        body = {"canvas": "ok", "triton": "ready" if ready else "unreachable", "server": bridge.url}
        return JSONResponse(body, status_code=200 if ready else 503)

    routes = [
        Route("/", page),
        Route("/labels", labels),
        Route("/render", render, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/examples", example_list),
        Route("/examples/{name}.png", example),
        Route("/random", random_street),
        Route("/health", health),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)
