"""The parts of the reliability suite (``benchmarks/reliability.py`` runs them and writes the result).

(a) every bad input the server and the CLI have met, each followed by a good request; (b) a soak;
(c) SIGTERM and a restart on the same ports under load from 4 clients; (d) kill -9 under load: of the
launcher, and of everything at once; (e) a bounded fuzz run of the decoders, in a child process;
(f) three replicas behind one client: throughput against one, and failover through a crash and a
restart. Each part returns a dict of what it measured; nothing here asserts.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from ..client import CityserveClient
from ..data.synthetic import generate_scene
from ..errors import LabelError
from ..serving.codec import png_check_inflated
from .bad_cards import card_cases, run_cli
from .bad_inputs import png_idat_bomb
from .bad_requests import good_request, server_cases
from .load import run_load, tree_rss
from .serve_process import ServeProcess, free_ports, start_all


def label_pngs(h: int, w: int, n: int = 8) -> list[bytes]:
    """Synthetic street scenes' label ids (seeds 20000+: never trained on) as 1-channel PNGs."""
    return [cv2.imencode(".png", generate_scene(20000 + i, h, w).labels)[1].tobytes() for i in range(n)]


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def soak(server: ServeProcess, client: CityserveClient, pngs, expected, requests: int, concurrency: int) -> dict:
    triton = server.tritonserver().pid
    before = tree_rss(triton)
    marks = [0, min(1000, requests), requests]
    res = run_load(client, pngs, expected, requests, concurrency, rss_pid=lambda: triton, rss_every=marks)
    warm, end = res.rss_at.get(marks[1], 0), res.rss_at.get(requests, 0)
    return {
        **res.summary(),
        "concurrency": concurrency,
        "rss_mb": {
            "ready": round(before / 1e6, 1),
            "start": round(res.rss_at.get(0, 0) / 1e6, 1),
            f"after_{marks[1]}": round(warm / 1e6, 1),
            "end": round(end / 1e6, 1),
        },
        "rss_growth_after_warmup": round((end - warm) / warm, 4) if warm else None,
        "load_average_end": _loadavg(),
    }


def bad_inputs(
    server: ServeProcess,
    client: CityserveClient,
    pngs,
    expected,
    work: Path,
    base_card: Path,
    aot_card: Path | None,
    demo_gen: Path | None,
) -> list[dict]:
    http = f"127.0.0.1:{server.ports[1]}"
    rows = []

    def record(name: str, issue: str, bad: dict) -> None:
        after = good_request(client, pngs[0], expected[0])
        rows.append({"case": name, "issue": issue, **bad, "then_good_request": after})

    for name, issue, send in server_cases(client, http):
        if name.startswith("IDAT bomb"):
            record(name, issue, _bomb_then_good(client, send, pngs[1], expected[1]))
        else:
            record(name, issue, send())
    out = work / "cards"
    for name, issue, card in card_cases(base_card, out):
        dest = out / f"repo-{name}"
        res = run_cli(
            [
                "repo",
                "build",
                "--target",
                "cpu",
                "--cpu-engine",
                "onnxruntime",
                "--model",
                str(card),
                "--out",
                str(dest),
            ]
        )
        if "injection" in name and res["exit"] == 0:
            texts = [p.read_text() for p in dest.glob("*/config.pbtxt")]
            res["configs_carry_injected_field"] = any("\ndefault_model_filename" in t for t in texts)
            res["injected_value_inert"] = not res["configs_carry_injected_field"]
        record(name, issue, res)
    record("malicious pickle (posix.system)", "13.9", _pickle_case(work))
    if demo_gen is not None:
        bad = work / "pt_inception-bad.pth"
        bad.write_bytes(b"not weights" * 100)
        seg = demo_gen.parent / "segmenter-demo.card.json"
        record(
            "eval --inception with a bad file",
            "13.9",
            run_cli(
                [
                    "eval",
                    "generator",
                    str(demo_gen),
                    "--segmenter",
                    str(seg),
                    "--seeds",
                    "10000-10049",
                    "--inception",
                    str(bad),
                ]
            ),
        )
    if aot_card is not None:
        copy = work / "downloaded-aot"
        shutil.copytree(aot_card.parent, copy)
        label = work / "label.png"
        label.write_bytes(pngs[0])
        card = copy / aot_card.name
        record(
            "AOT package from elsewhere: render",
            "13.8",
            run_cli(["render", str(label), "--model", str(card), "--engine", "aot", "--out", str(work / "aot.png")]),
        )
        record(
            "AOT package from elsewhere: repo build",
            "13.8",
            run_cli(
                [
                    "repo",
                    "build",
                    "--target",
                    "cpu",
                    "--cpu-engine",
                    "aot",
                    "--model",
                    str(card),
                    "--out",
                    str(work / "r-aot"),
                ]
            ),
        )
    return rows


def bomb_cost(width: int = 512, height: int = 256) -> dict:
    """Side by side in this process: refusing the 2 GiB IDAT bomb by streaming inflate (what the decode
    model does now) against OpenCV decoding it (what it did before: libpng inflates it all)."""
    bomb = png_idat_bomb(width, height, 2 << 30)
    t = time.perf_counter()
    try:
        png_check_inflated(bomb)
        refused = False
    except LabelError:
        refused = True
    check_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    img = cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_UNCHANGED)
    cv2_s = time.perf_counter() - t
    return {
        "header": f"{width}x{height}",
        "wire_bytes": len(bomb),
        "inflated_bytes": 2 << 30,
        "streaming_check_refused": refused,
        "streaming_check_ms": round(check_ms, 2),
        "opencv_decode_s": round(cv2_s, 2),
        "opencv_result": None if img is None else list(img.shape),
        "load_average": _loadavg(),
    }


def _bomb_then_good(client, send, png: bytes, want: bytes) -> dict:
    """The bomb, and a good request sent 1 ms after it (while the bomb is being refused)."""
    behind: dict = {}
    bomb = threading.Thread(target=lambda: behind.setdefault("bomb", send()))
    good = threading.Thread(target=lambda: behind.setdefault("good", good_request(client, png, want)))
    bomb.start()
    time.sleep(0.001)
    good.start()
    bomb.join()
    good.join()
    return {**behind["bomb"], "good_request_behind_it": behind["good"]}


def _pickle_case(work: Path) -> dict:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    path = work / "evil.pth"
    path.write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    res = run_cli(
        ["import", "spade", str(path), "--label-set", "cityscapes", "--size", "256x512", "--out", str(work / "x")]
    )
    res["names_blocked_global"] = "posix.system" in res["stderr"]
    res["repeats_torch_hint"] = "weights_only=False" in res["stderr"]
    return res


class Clients:
    """N clients of their own (single URL each) in threads, each sending until told to stop."""

    def __init__(self, url: str, pngs, expected, n: int = 4):
        self.pngs, self.expected = pngs, expected
        self.clients = [CityserveClient(url, timeout=300) for _ in range(n)]
        self.stop = threading.Event()
        self.after: list[int] = [0] * n  # requests completed since `mark()`
        self.ok = self.errors = self.wrong = 0
        self.first_errors: list[str] = []
        self.max_ms = 0.0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, k: int) -> None:
        i = k
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                good = self.clients[k].label2photo(self.pngs[i % len(self.pngs)]) == self.expected[i % len(self.pngs)]
                err = None
            except Exception as e:
                good, err = False, f"{type(e).__name__}: {e}"
            with self._lock:
                self.max_ms = max(self.max_ms, (time.perf_counter() - started) * 1000)
                self.ok += err is None
                self.wrong += err is None and not good
                self.errors += err is not None
                if err and len(self.first_errors) < 5:
                    self.first_errors.append(err[:300])
                self.after[k] += 1
            i += 4

    def mark(self) -> None:
        with self._lock:
            self.after = [0] * len(self.after)

    def wait_each(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while min(self.after) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def finish(self) -> dict:
        self.stop.set()
        for t in self.threads:
            t.join(600)
        for c in self.clients:
            c.close()
        return {
            "ok": self.ok,
            "errors": self.errors,
            "wrong": self.wrong,
            "max_latency_ms": round(self.max_ms, 1),
            "first_errors": self.first_errors,
        }


def restart_under_load(server: ServeProcess, pngs, expected) -> dict:
    clients = Clients(server.grpc_url, pngs, expected)
    clients.wait_each(25)
    t0 = time.perf_counter()
    rc = server.terminate(300)
    stopped = time.perf_counter() - t0
    drained = next((line.strip() for line in server.lines if "drained in" in line or "drain timeout" in line), "")
    server.start(600)
    ready = time.perf_counter() - t0
    clients.mark()
    clients.wait_each(25)
    return {
        **clients.finish(),
        "exit_code": rc,
        "drain": drained,
        "stopped_after_s": round(stopped, 1),
        "ready_again_after_s": round(ready, 1),
        "clients": 4,
        "load_average_end": _loadavg(),
    }


def _wait_gone(procs, timeout: float = 60.0) -> list:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


def kill9_under_load(server: ServeProcess, pngs, expected, everything: bool) -> dict:
    """kill -9 of `cityserve serve` (its tritonserver then stops on its own: PR_SET_PDEATHSIG), or of
    the launcher, tritonserver and its stubs at once; then a new server on the same ports."""
    clients = Clients(server.grpc_url, pngs, expected)
    clients.wait_each(10)
    tree = server.tree()
    prefix = server.shm_prefix()
    triton = server.tritonserver()
    t0 = time.perf_counter()
    os.kill(server.proc.pid, signal.SIGKILL)
    if everything and triton is not None:
        os.killpg(triton.pid, signal.SIGKILL)
    server.proc.wait(60)
    orphans = _wait_gone(tree)
    left = [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] if prefix else []
    left_mb = sum(os.path.getsize(f"/dev/shm/{n}") for n in left) / 1e6
    server.start(600)
    ready = time.perf_counter() - t0
    cleaned = next((line.strip() for line in server.lines if "removed" in line and "shared-memory" in line), "")
    still = [n for n in os.listdir("/dev/shm") if prefix and n.startswith(prefix)]
    clients.mark()
    clients.wait_each(10)
    return {
        **clients.finish(),
        "killed": "launcher, tritonserver and stubs" if everything else "launcher only",
        "orphans": [(p.pid, p.name()) for p in orphans],
        "shm_left_by_the_kill": len(left),
        "shm_left_mb": round(left_mb, 1),
        "cleaned_at_start": cleaned,
        "shm_left_after_restart": len(still),
        "ready_again_after_s": round(ready, 1),
        "load_average_end": _loadavg(),
    }


def fuzz(examples: int) -> dict:
    code = f"import json; from cityserve.bench.fuzz_decode import fuzz_decoders; print(json.dumps(fuzz_decoders({examples})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    out = {"exit_code": res.returncode, "crashed": res.returncode != 0}
    if res.returncode == 0:
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    else:
        out["stderr_tail"] = res.stderr[-600:]
    return out


def replicas(repo: Path, pngs, expected_fn, requests: int, concurrency: int) -> dict:
    ports = free_ports(9)
    servers = [ServeProcess(repo, ports=tuple(ports[3 * i : 3 * i + 3])) for i in range(3)]
    start_all(servers)
    try:
        with CityserveClient(servers[0].grpc_url) as c:
            expected = expected_fn(c)
        one = CityserveClient([servers[0].grpc_url], timeout=120)
        r1 = run_load(one, pngs, expected, requests, concurrency).summary()
        one.close()
        three = CityserveClient([s.grpc_url for s in servers], timeout=120)
        r3 = run_load(three, pngs, expected, requests, concurrency).summary()
        back = threading.Event()
        marks: dict[str, float] = {}  # event -> time.perf_counter()

        def chaos(done: int) -> None:
            if done == requests // 4 and "crash" not in marks:
                marks["crash"] = time.perf_counter()
                servers[0].crash()
            elif done == requests // 2 and "sigterm" not in marks:
                marks["sigterm"] = time.perf_counter()
                threading.Thread(target=lambda: (servers[1].terminate(), servers[1].start(), back.set())).start()

        res = run_load(
            three,
            pngs,
            expected,
            requests,
            concurrency,
            on_progress=chaos,
            gate=lambda i: back.wait(300) if i >= requests * 4 // 5 else None,
        )
        three.close()
        failover, at_s = {}, {}
        for event, at in marks.items():
            rel = at - res.started
            at_s[event] = round(rel, 2)
            hit = [(end - rel) * 1000 for start, end, _ in res.events if start <= rel <= end]
            failover[event] = round(max(hit), 1) if hit else None
        crashed_exit = servers[0].wait(120)
        return {
            "requests": requests,
            "concurrency": concurrency,
            "one_replica": r1,
            "three_replicas": r3,
            "speedup": round(r3["throughput_rps"] / r1["throughput_rps"], 2) if r1["throughput_rps"] else None,
            "chaos": {
                **res.summary(),
                "wrong": res.wrong,
                "events_at_s": at_s,
                "slowest_request_in_flight_at_event_ms": failover,
                "crashed_replica_exit": crashed_exit,
            },
            "load_average_end": _loadavg(),
        }
    finally:
        for s in servers:
            s.kill()
