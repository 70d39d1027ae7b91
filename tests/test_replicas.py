"""Three real `cityserve serve` replicas on loopback behind one ``CityserveClient``: 2000 requests from
several threads while one replica crashes (SIGKILL of its tritonserver and stubs) and another is
SIGTERMed and restarted on the same ports. Nothing may be lost or wrong; the crashed one leaves no
process and no shared memory behind; the restarted one is put back and serves again."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import psutil
import pytest
from _helpers_serving import block_labels, png_bytes, tiny_pix2pix_onnx

from cityserve.bench.serve_process import ServeProcess, free_ports, start_all

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]
REQUESTS = 2000


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from cityserve.serving.repo import build_repository

    root = tmp_path_factory.mktemp("replicas")
    onnx = tiny_pix2pix_onnx(root / "gen")
    built = build_repository([onnx], "cpu", root / "repo", overrides={"intra_op_threads": 1, "max_queue_delay_us": 500})
    return {"path": built.path, "onnx": onnx}


@pytest.fixture(scope="module")
def replicas(repo):
    ports = free_ports(9)
    servers = [
        ServeProcess(repo["path"], *(("--allow-admin-api",) if i == 2 else ()), ports=tuple(ports[3 * i : 3 * i + 3]))
        for i in range(3)
    ]
    start_all(servers)
    try:
        yield servers
    finally:
        for s in servers:
            s.kill()


def label2photo_successes(metrics_url: str) -> float:
    from cityserve.serving.drain import read_metrics

    return read_metrics(metrics_url).get("nv_inference_request_success", {}).get("label2photo", 0.0)


def test_failover_loses_nothing_through_a_crash_and_a_restart(repo, replicas):
    from cityserve.client import CityserveClient
    from cityserve.engines.base import Renderer
    from cityserve.export.onnx_export import card_from_onnx
    from cityserve.labels import get_label_set
    from cityserve.serving.codec import decode_rgb_png

    local = Renderer(card_from_onnx(repo["onnx"]), engine="onnxruntime")
    maps = [block_labels(300 + i, 128, 128) for i in range(8)]
    colors = get_label_set("cityscapes")
    inputs = [png_bytes(m if i % 2 else colors.ids_to_colors(m)) for i, m in enumerate(maps)]
    want = [local.render(m)[0] for m in maps]
    a, b, c = replicas
    shm_a = a.shm_prefix()
    tree_a = a.tree()
    assert shm_a and any(n.startswith(shm_a) for n in os.listdir("/dev/shm"))

    results: list = [None] * REQUESTS
    counter = iter(range(REQUESTS))
    lock = threading.Lock()
    b_back = threading.Event()
    finished = [0]

    client = CityserveClient([s.grpc_url for s in replicas], timeout=90)

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            if i >= REQUESTS - 400:
                b_back.wait(180)  # the last 400 only once B is back in the pool
            try:
                results[i] = decode_rgb_png(client.label2photo(inputs[i % 8]))
            except Exception as e:  # recorded, asserted on below
                results[i] = e
            with lock:
                finished[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        while finished[0] < 300:
            time.sleep(0.01)
        a.crash()  # A: tritonserver and its stubs SIGKILLed at once
        while finished[0] < 700:
            time.sleep(0.01)
        assert b.terminate() == 0  # B: drained and stopped ...
        assert any("drained in" in line for line in b.lines)
        b.start()  # ... and started again on the same ports
        deadline = time.monotonic() + 60
        while not next(r["up"] for r in client.pool.state() if r["url"] == b.grpc_url):
            assert time.monotonic() < deadline, "the restarted replica was never put back"
            time.sleep(0.05)
        b_back.set()  # the last 400 go out once the health checks have put B back in the pool
        for t in threads:
            t.join(240)
    finally:
        b_back.set()
        client.close()

    errors = [(i, r) for i, r in enumerate(results) if not isinstance(r, np.ndarray)]
    assert not errors, f"{len(errors)} requests failed, first: {errors[:3]}"
    wrong = [i for i, r in enumerate(results) if np.abs(r.astype(int) - want[i % 8].astype(int)).max() > 1]
    assert not wrong, f"{len(wrong)} wrong photos"
    assert label2photo_successes(b.metrics_url) > 0  # the restarted B was put back and served
    assert label2photo_successes(c.metrics_url) > 0
    assert a.wait(60) == 1  # A's `cityserve serve` saw its server die and cleaned up after it
    gone, alive = psutil.wait_procs(tree_a, timeout=15)
    assert not alive, f"orphans of the crashed replica: {[(p.pid, p.name()) for p in alive]}"
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(shm_a)], "the crash left shared memory behind"


def test_admin_api_opens_with_the_flag(replicas):
    """Replica C was started with --allow-admin-api: there, and only there, shared memory registers."""
    import tritonclient.grpc as grpcclient
    import tritonclient.utils.shared_memory as shm
    from tritonclient.utils import InferenceServerException

    key = f"/cityserve_probe_open_{os.getpid()}"
    region = shm.create_shared_memory_region("probe", key, 1 << 12)
    try:
        opened = grpcclient.InferenceServerClient(replicas[2].grpc_url)
        opened.register_system_shared_memory("probe", key, 1 << 12)
        assert "probe" in str(opened.get_system_shared_memory_status(as_json=True))
        opened.unregister_system_shared_memory("probe")
        closed = grpcclient.InferenceServerClient(replicas[1].grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            closed.register_system_shared_memory("probe", key, 1 << 12)
    finally:
        shm.destroy_shared_memory_region(region)


def test_a_restart_on_the_same_port_loses_nothing(repo, replicas):
    """One server, four clients of their own: SIGTERM and a restart on the same ports. The clients see
    "draining", "stopping", NOT_FOUND while models unload and refused connections, and retry each
    with capped, jittered backoff until the new server answers: every request succeeds."""
    from cityserve.client import CityserveClient
    from cityserve.serving.codec import decode_rgb_png

    server = replicas[1]
    png = png_bytes(block_labels(400, 128, 128))
    with CityserveClient(server.grpc_url) as probe:
        want = decode_rgb_png(probe.label2photo(png))
    restarted = threading.Event()
    outcomes: list = []

    def worker() -> None:
        with CityserveClient(server.grpc_url, timeout=120) as client:
            extra = 0
            while extra < 25:
                try:
                    outcomes.append(decode_rgb_png(client.label2photo(png)))
                except Exception as e:
                    outcomes.append(e)
                extra += restarted.is_set()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(outcomes) < 40:
            time.sleep(0.01)
        assert server.terminate() == 0
        server.start()
        restarted.set()
        for t in threads:
            t.join(180)
    finally:
        restarted.set()
    errors = [o for o in outcomes if not isinstance(o, np.ndarray)]
    assert not errors, errors[:3]
    assert len(outcomes) >= 140 and all(np.array_equal(o, want) for o in outcomes)
    assert label2photo_successes(server.metrics_url) >= 4 * 25 - 4  # served by the new server
