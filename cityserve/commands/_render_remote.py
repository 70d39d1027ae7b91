"""``cityserve render --server HOST:PORT[,HOST:PORT...]``: render through running servers instead of here."""

from __future__ import annotations

import time

from ..errors import ConfigError


def render_cli(args) -> int:
    """``cityserve render LABELS.png --server HOST:PORT[,HOST:PORT...] --out PHOTO.png [--model NAME]``:
    the label PNG goes to the server's ``label2photo`` ensemble (or the ensemble named by --model);
    the photo PNG comes back. Several servers: the request goes to one that is up, and fails over to
    the others within the deadline. ``--nearest`` decodes the colors here (snapping to the palette) and sends the ids to
    the raw render model instead."""
    from ..cards import atomic_write_bytes
    from ..client import CityserveClient

    out = str(args.out)
    if not out.lower().endswith(".png"):
        raise ConfigError(f"--out {out}: the photo is written as PNG; name it *.png")
    for flag in ("instances", "style", "z"):
        if getattr(args, flag, None):
            raise ConfigError(
                f"--{flag} is not available with --server: the served pipeline takes label maps "
                f"only; render locally with --model CARD"
            )
    model = getattr(args, "model", None) or "label2photo"
    timeout = float(getattr(args, "timeout", None) or 60.0)
    started = time.perf_counter()
    with CityserveClient(args.server, timeout=timeout) as client:
        cfg = client.model_config(model)
        inputs = [t["name"] for t in cfg.get("input", [])]
        if getattr(args, "nearest", False) or "labels" in inputs:
            render_model = model if "labels" in inputs else "render"
            client.render_model = render_model
            params = client.parameters(render_model)
            from ..labels import read_label_png

            ids = read_label_png(
                args.labels, params.get("label_set", "cityscapes"), nearest=bool(getattr(args, "nearest", False))
            )
            png = client.render(ids, output="png", seed=getattr(args, "seed", None))
            via = render_model
        elif "LABELS_PNG" in inputs:
            png = client.label2photo(args.labels, model=model)
            via = model
        else:
            raise ConfigError(
                f"served model {model!r} takes {inputs}, neither a label PNG (LABELS_PNG) nor "
                f"label ids (labels); use label2photo or a render model"
            )
    atomic_write_bytes(out, png)
    ms = (time.perf_counter() - started) * 1000
    print(f"wrote {out} (via {client.last_url or args.server} model {via!r}, {ms:.0f} ms)")
    return 0
