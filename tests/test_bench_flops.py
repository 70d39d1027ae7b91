"""FLOP counting against hand-computed layers, and the timing helper's figures."""

from __future__ import annotations

import torch
from torch import nn

from cityserve.bench.flops import conv2d_flops, count_flops
from cityserve.bench.timing import measure


def test_conv_flops_match_the_hand_formula():
    conv = nn.Conv2d(8, 16, kernel_size=3, padding=1, stride=2)
    x = torch.randn(1, 8, 32, 48)
    # output 16 x 16 x 24; each output value needs 8*3*3 MACs = 2*72 FLOPs
    assert count_flops(conv, [x]) == conv2d_flops(8, 16, 3, 3, 16, 24) == 2 * 16 * 16 * 24 * 72


def test_flops_scale_with_batch_and_add_up_over_layers():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2 * 8 * 8, 5)
    )
    one = count_flops(net, [torch.randn(1, 3, 8, 8)])
    by_hand = conv2d_flops(3, 4, 3, 3, 8, 8) + conv2d_flops(4, 2, 1, 1, 8, 8) + 2 * 128 * 5
    assert one == by_hand
    assert count_flops(net, [torch.randn(3, 3, 8, 8)]) == 3 * one


def test_grouped_conv():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_flops(conv, [torch.randn(1, 8, 10, 10)]) == conv2d_flops(8, 8, 3, 3, 10, 10, groups=8)


def test_measure_reports_percentiles_and_throughput():
    calls = []
    t = measure(lambda: calls.append(1), batch=4, warmup=2, runs=5)
    assert len(calls) == 7 and t.runs == 5
    lat = t.latency_ms
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert t.throughput_ips == 4 / (lat["mean"] / 1e3)
    assert t.peak_memory_mb > 10 and t.memory_kind == "rss"
