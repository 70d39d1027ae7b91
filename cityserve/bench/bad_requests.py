"""Every kind of bad request a running server has met (the 12 of the first probe and those of issue #13),
for ``benchmarks/reliability.py``: each is sent, its answer recorded, and a good request follows.

A case is ``(name, issue, send)``; ``send()`` returns the answer's status and message. Sizes come from
the served models' configs, so the same list runs against the demo model or a tiny one.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import cv2
import numpy as np
import tritonclient.utils.shared_memory as shm

from ..labels import get_label_set
from .bad_inputs import png_header_bomb, png_idat_bomb


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr if arr.ndim == 2 else arr[..., ::-1]))
    return buf.tobytes()


def answer(call: Callable[[], object]) -> dict:
    """Run one request: {"status", "message", "ms"} (status "OK" when it succeeded)."""
    started = time.perf_counter()
    try:
        call()
        status, message = "OK", ""
    except Exception as e:
        status = str(getattr(e, "status", "") or type(e).__name__)
        inner = getattr(e, "status", None)
        if callable(inner):
            status = str(inner()).replace("StatusCode.", "")
        message = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return {"status": status, "message": message, "ms": round((time.perf_counter() - started) * 1000, 1)}


def server_cases(client, http_url: str) -> list[tuple[str, str, Callable[[], dict]]]:
    """The bad requests for the server behind ``client`` (a CityserveClient) and its HTTP ``http_url``."""
    render = client.model_config(client.render_model)
    spec = {t["name"]: t for t in render["input"]}
    _, h, w = (int(d) for d in spec["labels"]["dims"])
    params = client.parameters(client.render_model)
    num_classes = int(params.get("num_classes", "35"))
    ids = np.kron(np.random.default_rng(5).choice([7, 8, 11, 21, 23, 26], (h // 8, w // 8)), np.ones((8, 8), np.uint8))
    ids = ids.astype(np.uint8)
    good = _png(ids)
    colors = get_label_set("cityscapes").ids_to_colors(ids)
    colors[3:5, 7:9] = (1, 2, 3)
    out_of_range = ids.copy()
    out_of_range[10:12, 20:30] = 200
    raw = {"labels": ids[None, None]}
    if "instances" in spec:
        raw["instances"] = ids[None, None].astype(np.int32)
    if "z" in spec:  # a generator with a latent: every raw case sends one, so it is refused for its own fault
        raw["z"] = np.zeros((1, int(spec["z"]["dims"][-1])), np.float32)
    missing = dict(raw)
    missing.pop("instances" if "instances" in raw else "labels")
    if "instances" not in raw:
        missing["instances"] = raw["labels"].astype(np.int32)  # and an input it does not have
    l2p = lambda data: lambda: answer(lambda: client.label2photo(data))
    raw_case = lambda feeds: lambda: answer(lambda: client.infer(client.render_model, feeds))

    def shm_register() -> dict:
        key = f"/cityserve_probe_{os.getpid()}"
        region = shm.create_shared_memory_region("probe", key, 1 << 16)
        try:
            return answer(lambda: client._client.register_system_shared_memory("probe", key, 1 << 16))
        finally:
            shm.destroy_shared_memory_region(region)

    def http(path: str, body: dict) -> Callable[[], dict]:
        def send() -> dict:
            req = urllib.request.Request(f"http://{http_url}{path}", data=json.dumps(body).encode())
            started = time.perf_counter()
            try:
                urllib.request.urlopen(req, timeout=30).read()
                status, message = "OK", ""
            except urllib.error.HTTPError as e:
                status, message = f"HTTP {e.code}", e.read().decode("utf-8", "replace")[:300]
            return {"status": status, "message": message, "ms": round((time.perf_counter() - started) * 1000, 1)}

        return send

    cases = [
        ("malformed PNG", "probe", l2p(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)),
        ("truncated PNG", "probe", l2p(good[: len(good) // 2])),
        ("not a PNG", "probe", l2p(b"hello, world" * 4)),
        ("header bomb 30000x30000", "probe", l2p(png_header_bomb(30000, 30000))),
        ("unknown palette color", "probe", l2p(_png(colors))),
        ("out-of-range id 200 in a PNG", "probe", l2p(_png(out_of_range))),
        ("wrong size 32x64", "probe", l2p(_png(np.full((32, 64), 7, np.uint8)))),
        ("raw ids out of range", "probe", raw_case({**raw, "labels": np.full_like(raw["labels"], num_classes + 5)})),
        ("raw ids of the wrong dtype", "probe", raw_case({**raw, "labels": raw["labels"].astype(np.int32)})),
        ("raw ids of the wrong shape", "probe", raw_case({**raw, "labels": raw["labels"][:, :, : h // 2]})),
        ("raw input missing or unknown", "probe", raw_case(missing)),
        (
            "JPEG without a frame header",
            "probe",
            lambda: answer(lambda: client.photo2labels(b"\xff\xd8\xff\xe0" + b"\0" * 10)),
        ),
        (f"IDAT bomb: {w}x{h} header, 2 GiB inflated", "13.3", l2p(png_idat_bomb(w, h, 2 << 30))),
        ("register shared memory (gRPC)", "13.2", shm_register),
        (
            "register shared memory (HTTP)",
            "13.2",
            http("/v2/systemsharedmemory/region/probe/register", {"key": "/probe", "offset": 0, "byte_size": 64}),
        ),
        ("load a model (gRPC)", "13.2", lambda: answer(lambda: client._client.load_model(client.render_model))),
        (
            "change log settings (gRPC)",
            "13.2",
            lambda: answer(lambda: client._client.update_log_settings({"log_file": "/tmp/cityserve-probe.log"})),
        ),
    ]
    return cases


def good_request(client, png: bytes, want: bytes) -> dict:
    """A good label2photo request and whether its photo is the expected one."""
    out: dict = {}
    result = answer(lambda: out.setdefault("png", client.label2photo(png)))
    result["correct"] = out.get("png") == want
    return result
