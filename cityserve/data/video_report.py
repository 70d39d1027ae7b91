"""The dataset builder's ``report.md``: settings and rules, per source the sampling speed, the pseudo
labels' scores against ground truth, and one row per sampled frame with its decision and scores."""

from __future__ import annotations


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def report_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Video dataset report",
        "",
        f"Every {s['every_s']} s ({s['sampling']}), frames {s['size'][0]}x{s['size'][1]} (HxW). Blur: {s['blur']['rule']}. "
        f"Caption: >= {s['overlay']['min_glyphs']} glyphs on a line; overlay: flat saturated box >= "
        f"{s['overlay']['box_min_fraction']:.0%} of the frame.",
        "",
        f"Kept {report['summary']['kept']} of {report['summary']['sampled']} sampled frames.",
        "",
    ]
    if "pseudo_label_quality" in report:
        lines += _quality_lines(report["pseudo_label_quality"], "all sources")
    for v in report["videos"]:
        summ = ", ".join(f"{k} {n}" for k, n in v["summary"].items())
        sp = v["sampling"]
        lines += [
            f"## {v['video']}",
            "",
            summ,
            "",
            f"Sampling: {sp['method']}, {_fmt(sp['frames_per_s'], '.1f')} frames/s ({sp['seconds']} s).",
            "",
        ]
        if "pseudo_label_quality" in v:
            lines += _quality_lines(v["pseudo_label_quality"], v["city"])
        lines += [
            "| frame | time (s) | decision | reason | sharpness | reference | ratio | overlay score | file |",
            "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for f in v["frames"]:
            lines.append(
                f"| {f['index']} | {_fmt(f['time_s'], '.2f')} | {f['decision']} | {f['reason']} | "
                f"{f['blur_score']:.1f} | {_fmt(f['blur_reference'], '.1f')} | {_fmt(f['blur_ratio'], '.2f')} | "
                f"{f['overlay_score']:.2f} | {f['file']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _quality_lines(q: dict, what: str) -> list[str]:
    rows = [
        f"Pseudo labels vs ground truth ({what}, {q['frames']} frames): mIoU {_fmt(q['miou'], '.3f')}, "
        f"pixel accuracy {_fmt(q['pixel_accuracy'], '.3f')}.",
        "",
        "| class | IoU |",
        "| --- | ---: |",
    ]
    rows += [f"| {n} | {_fmt(i, '.3f')} |" for n, i in q["per_class_iou"].items()]
    return rows + [""]
