#!/usr/bin/env python
"""The reliability suite: hostile input, a soak, restarts and crashes under load, a fuzz run, replicas.

    python benchmarks/reliability.py                 # everything, on the shipped demo model (an hour or
                                                     # more on 2 shared cores: the soak is 10 000 requests)
    python benchmarks/reliability.py --quick         # a tiny generator and small counts: minutes
    python benchmarks/reliability.py --parts a,e,f   # some parts only
    python benchmarks/reliability.py --parts b --update   # rerun the soak, keep the day's other parts

(a) every bad input the server and the CLI have met (the first probe's 12 kinds and those of issue
#13), each followed by a good request; (b) a soak of --soak-requests label2photo requests at
--concurrency on the cpu target: errors, p50/p99, throughput, the server process tree's RSS at start,
after 1 000 and at the end; (c) SIGTERM and a restart on the same ports under load from 4 clients;
(d) kill -9 under load, of `cityserve serve` alone and of it with tritonserver and its stubs: orphans,
/dev/shm, a new server on the same ports; (e) a bounded hypothesis fuzz run of the PNG/JPEG decoding;
(f) three replicas of a tiny model behind one client: throughput against one replica, and 2 000
requests through a crash and a restart. Results: benchmarks/results/<device>/<date>-reliability.json
and .md. The figures are what this machine gave at the time; the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = dict(label_nc=35, input_mode="color", ngf=2, netG="unet_128", use_dropout=False)


def tiny_generator(work: Path, height: int, width: int):
    from cityserve.bench.models import ModelSpec

    spec = ModelSpec(f"tiny-pix2pix-{height}x{width}", "pix2pix", "generator", TINY, "cityscapes", height, width)
    return spec.card(work)


def build(cards, out: Path, **overrides):
    from cityserve.serving.repo import build_repository

    return build_repository(cards, "cpu", out, overrides={"intra_op_threads": 0, **overrides})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny generator, small counts (minutes)")
    p.add_argument("--parts", default="a,b,c,d,e,f", help="which parts to run (default all: a,b,c,d,e,f)")
    p.add_argument("--soak-requests", type=int, help="(b) requests (default 10000; quick 300)")
    p.add_argument("--concurrency", type=int, default=16, help="(b) requests in flight (default 16)")
    p.add_argument("--fuzz-examples", type=int, help="(e) hypothesis examples (default 20000; quick 500)")
    p.add_argument("--replica-requests", type=int, help="(f) requests per run (default 2000; quick 400)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results root")
    p.add_argument(
        "--update",
        action="store_true",
        help="replace only the parts run now in the day's result file, keeping the others (each part "
        "records the command that measured it)",
    )
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))

    from cityserve.bench import devices
    from cityserve.bench import reliability as R
    from cityserve.bench.models import demo_cards
    from cityserve.bench.serve_process import ServeProcess
    from cityserve.cards import command_line, environment
    from cityserve.client import CityserveClient

    work = Path(tempfile.mkdtemp(prefix="cityserve-reliability-"))
    doc = {
        "name": "reliability-quick" if args.quick else "reliability",
        "kind": "reliability",
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command_line(),
        "device": devices.describe("cpu"),
        "device_label": devices.device_label("cpu"),
        "versions": environment(),
        "machine": "shared with other engineers' jobs and a training run while this ran: latencies and "
        "throughputs are this busy machine's, compare them only within this file",
        "load_average_start": R._loadavg(),
        "parts": {},
    }
    demo = demo_cards()
    if args.quick or demo["generator"] is None:
        gen = tiny_generator(work, 128, 256)
        model_note = f"{gen.name} (random weights) + the demo segmenter"
    else:
        gen = demo["generator"]
        model_note = f"the shipped demo models ({gen.name}, {demo['segmenter'].name if demo['segmenter'] else '-'})"
    cards = [gen] + ([demo["segmenter"]] if demo["segmenter"] else [])
    doc["model"] = model_note
    pngs = R.label_pngs(gen.height, gen.width)
    needs_demo_server = parts & {"a", "b", "c", "d"}
    if needs_demo_server:
        built = build(cards, work / "repo", latent="zero")  # deterministic answers, checked one by one
        doc["render_engine"] = built.models["render"].get("engine")
        server = ServeProcess(built.path).start(900)
        client = CityserveClient(server.grpc_url, timeout=300)
        expected = [client.label2photo(png) for png in pngs]
        try:
            if "b" in parts:
                n = args.soak_requests or (300 if args.quick else 10_000)
                print(f"(b) soak: {n} requests at concurrency {args.concurrency} ...", flush=True)
                doc["parts"]["b_soak"] = R.soak(server, client, pngs, expected, n, args.concurrency)
            if "a" in parts:
                print("(a) bad inputs ...", flush=True)
                aot = None
                if doc["render_engine"] == "aot":
                    from cityserve.export.aot import aot_card_for

                    aot = aot_card_for(gen).path
                base = tiny_generator(work, 128, 128).path
                demo_gen = None if args.quick else gen.path
                doc["parts"]["a_bad_inputs"] = R.bad_inputs(server, client, pngs, expected, work, base, aot, demo_gen)
                doc["parts"]["a_bomb_cost"] = R.bomb_cost()
            client.close()
            if "c" in parts:
                print("(c) SIGTERM and restart under load ...", flush=True)
                doc["parts"]["c_restart"] = R.restart_under_load(server, pngs, expected)
            if "d" in parts:
                print("(d) kill -9 under load ...", flush=True)
                doc["parts"]["d_kill9"] = [
                    R.kill9_under_load(server, pngs, expected, everything=e) for e in (False, True)
                ]
        finally:
            server.kill()
    if "e" in parts:
        n = args.fuzz_examples or (500 if args.quick else 20_000)
        print(f"(e) fuzz: {n} examples ...", flush=True)
        doc["parts"]["e_fuzz"] = R.fuzz(n)
    if "f" in parts:
        n = args.replica_requests or (400 if args.quick else 2000)
        print(f"(f) replicas: {n} requests ...", flush=True)
        tiny = tiny_generator(work, 128, 128)
        repo = build([tiny], work / "repo-tiny", intra_op_threads=1, max_queue_delay_us=500).path
        small = R.label_pngs(128, 128)
        doc["parts"]["f_replicas"] = R.replicas(repo, small, lambda c: [c.label2photo(x) for x in small], n, 8)
        doc["parts"]["f_replicas"]["model"] = f"{tiny.name} (random weights, ~1 ms an image in onnxruntime)"
    doc["load_average_end"] = R._loadavg()
    out = args.out / doc["device_label"] / f"{doc['date'][:10]}-{doc['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for part in doc["parts"].values():  # each part says which run measured it
        for row in part if isinstance(part, list) else [part]:
            if isinstance(row, dict):
                row.setdefault("measured_by", {"command": doc["command"], "date": doc["date"]})
    if args.update and out.is_file():  # keep the parts this run did not measure from the day's file
        old = json.loads(out.read_text())
        doc["parts"] = {**old.get("parts", {}), **doc["parts"]}
        doc["earlier_runs"] = old.get("earlier_runs", []) + [
            {k: old.get(k) for k in ("command", "date", "load_average_start", "load_average_end")}
        ]
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    from cityserve.bench.reliability_report import markdown

    out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
