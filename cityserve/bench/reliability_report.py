"""The markdown summary of a ``benchmarks/reliability.py`` result (every figure copied from its JSON)."""

from __future__ import annotations


def _ok(good: dict) -> str:
    if not good:
        return "–"
    return "served, correct" if good.get("status") == "OK" and good.get("correct") else f"**{good.get('status')}**"


def _bad_rows(rows: list[dict]) -> list[str]:
    out = [
        "| case | issue | answer | ms | message / stderr | next good request |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for r in rows:
        status = r.get("status", f"exit {r.get('exit')}")
        if "traceback" in r and r["traceback"]:
            status += " (traceback)"
        ms = r.get("ms", r.get("seconds", 0) * 1000 if "seconds" in r else None)
        msg = (r.get("message") or r.get("stderr") or "").replace("|", "\\|").replace("\n", " ")[:160]
        extra = ""
        if "good_request_behind_it" in r:
            g = r["good_request_behind_it"]
            extra = f" (a good request sent 1 ms behind it: {g.get('status')}, {g.get('ms')} ms)"
        if "injected_value_inert" in r:
            extra = f" (configs carry the injected field: {r['configs_carry_injected_field']})"
        out.append(
            f"| {r['case']} | {r['issue']} | {status} | {ms if ms is None else round(ms, 1)} | {msg}{extra} | "
            f"{_ok(r.get('then_good_request'))} |"
        )
    return out


def markdown(doc: dict) -> str:
    parts = doc["parts"]
    lines = [
        f"# Reliability on {doc['device']['cpu']} ({doc['device']['cpu_count']} CPUs), {doc['date'][:10]}",
        "",
        f"`{doc['command']}` · model: {doc.get('model')} (render engine {doc.get('render_engine', '–')}) · "
        f"torch {doc['versions'].get('torch')} · load average at start {doc['load_average_start']}, at end "
        f"{doc['load_average_end']}",
        "",
        f"Machine: {doc['machine']}.",
        "",
    ]
    if "a_bad_inputs" in parts:
        rows = parts["a_bad_inputs"]
        served = sum(_ok(r.get("then_good_request")) == "served, correct" for r in rows)
        lines += [f"## (a) Bad inputs, each followed by a good request ({served}/{len(rows)} served)", ""]
        lines += _bad_rows(rows) + [""]
    if "a_bomb_cost" in parts:
        b = parts["a_bomb_cost"]
        lines += [
            f"The IDAT bomb ({b['header']} header, {b['wire_bytes'] / 1e6:.1f} MB on the wire, "
            f"{b['inflated_bytes'] / 2**30:.0f} GiB inflated), side by side in one process: the streaming check "
            f"refused it in {b['streaming_check_ms']} ms; OpenCV's decode (the decode model's path before the "
            f"check) took {b['opencv_decode_s']} s (load average {b['load_average']}).",
            "",
        ]
    if "b_soak" in parts:
        s = parts["b_soak"]
        growth = s["rss_growth_after_warmup"]
        growth = "–" if growth is None else f"{growth * 100:.2f} %"
        lines += [
            "## (b) Soak",
            "",
            "Wrong: an answer that is not the photo the same label map gave before the load, to within "
            "8 levels (the repository is built with `--latent zero`, so answers are deterministic; a "
            "dynamic batch of another size may take other BF16 kernels). The same check holds in (c) and (d).",
            "",
            "| requests | concurrency | ok | errors | wrong | p50 ms | p99 ms | req/s | RSS MB (ready / start / "
            "after 1000 / end) | growth after warm-up |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            f"| {s['requests']} | {s['concurrency']} | {s['ok']} | {s['errors']} | {s['wrong']} | "
            f"{s['latency_ms']['p50']} | {s['latency_ms']['p99']} | {s['throughput_rps']} | "
            f"{' / '.join(str(v) for v in s['rss_mb'].values())} | "
            f"{growth} |",
            "",
        ]
    if "c_restart" in parts:
        c = parts["c_restart"]
        lines += [
            "## (c) SIGTERM and restart on the same ports, 4 clients",
            "",
            f"{c['ok']} requests ok, {c['errors']} failed, {c['wrong']} wrong; {c['drain']}; stopped after "
            f"{c['stopped_after_s']} s, ready again after {c['ready_again_after_s']} s; slowest request "
            f"{c['max_latency_ms']} ms (it waited out the restart in the client's retries).",
            "",
        ]
    if "d_kill9" in parts:
        lines += [
            "## (d) kill -9 under load, then a new server on the same ports",
            "",
            "| killed | ok | failed | wrong | orphans | /dev/shm regions left by the kill | cleaned by the new "
            "server | left after restart | ready again after s |",
            "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |",
        ]
        for d in parts["d_kill9"]:
            lines.append(
                f"| {d['killed']} | {d['ok']} | {d['errors']} | {d['wrong']} | {len(d['orphans'])} | "
                f"{d['shm_left_by_the_kill']} ({d['shm_left_mb']} MB) | {d['cleaned_at_start'] or '–'} | "
                f"{d['shm_left_after_restart']} | {d['ready_again_after_s']} |"
            )
        lines.append("")
    if "e_fuzz" in parts:
        e = parts["e_fuzz"]
        lines += ["## (e) Fuzz of the PNG / JPEG decoding (hypothesis)", ""]
        if e.get("crashed"):
            lines += [f"The fuzz process died (exit {e['exit_code']}): {e.get('stderr_tail', '')[-300:]}", ""]
        else:
            lines += [
                f"{e['examples']} inputs, each through the label and the photo decoder, in {e['seconds']} s: "
                f"{e['decoded']} decodes, {e['refused']} one-line refusals, findings: "
                f"{e['findings'] or 'none'}.",
                "",
                "| refusal (first words) | count |",
                "| --- | ---: |",
                *[f"| {k} | {v} |" for k, v in e["refusal_kinds"].items()],
                "",
            ]
    if "f_replicas" in parts:
        f = parts["f_replicas"]
        ch = f["chaos"]
        lines += [
            f"## (f) Replicas behind one client ({f['model']})",
            "",
            "| run | requests | concurrency | ok | errors | p50 ms | p99 ms | req/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in (
            ("1 replica", f["one_replica"]),
            ("3 replicas", f["three_replicas"]),
            ("3, crash + restart", ch),
        ):
            lines.append(
                f"| {name} | {r['requests']} | {f['concurrency']} | {r['ok']} | {r['errors']} | "
                f"{r['latency_ms']['p50']} | {r['latency_ms']['p99']} | {r['throughput_rps']} |"
            )
        lines += [
            "",
            f"3 vs 1 replica: {f['speedup']}x (all replicas share this machine's 2 cores). Chaos run: "
            f"{ch['wrong']} wrong; replica A crashed (SIGKILL of tritonserver and stubs) at "
            f"{ch['events_at_s'].get('crash')} s, B SIGTERMed and restarted from {ch['events_at_s'].get('sigterm')} s; "
            f"failover: the slowest request in flight at the crash took "
            f"{ch['slowest_request_in_flight_at_event_ms'].get('crash')} ms after it, at the SIGTERM "
            f"{ch['slowest_request_in_flight_at_event_ms'].get('sigterm')} ms.",
            "",
        ]
    return "\n".join(lines)
