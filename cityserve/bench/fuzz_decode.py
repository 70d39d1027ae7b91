"""A bounded fuzz run of the server's PNG / JPEG decoding (``cityserve.serving.codec``), with hypothesis.

Inputs are random bytes and mutations of valid files: flipped bytes, truncations, IHDR headers
rewritten with any size / depth / color type / interlace (and a correct CRC, so they get past the
checksum), foreign chunks spliced in, IDAT data replaced by random or random-but-deflated bytes. The
property: every input either decodes to the declared shape and dtype or is refused with a one-line
``LabelError``; any other exception, a multi-line message or a wrong shape is a finding. A crash of
the process itself (a segfault in a decoder) is caught by running this in a child process
(``benchmarks/reliability.py`` does).
"""

from __future__ import annotations

import re
import time
import zlib

import cv2
import numpy as np

from ..errors import LabelError
from ..labels import get_label_set
from ..serving.codec import LabelPngDecoder, PhotoDecoder
from .bad_inputs import PNG_SIGNATURE, png_chunk, png_ihdr


def _valid_files(h: int, w: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    ids = np.kron(rng.choice([7, 8, 11, 21, 23, 26], size=(h // 8, w // 8)), np.ones((8, 8), np.int64)).astype(np.uint8)
    colors = get_label_set("cityscapes").ids_to_colors(ids)[..., ::-1]
    files = [cv2.imencode(".png", ids)[1].tobytes(), cv2.imencode(".png", np.ascontiguousarray(colors))[1].tobytes()]
    files.append(cv2.imencode(".jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes())
    return files


def _strategies(h: int, w: int):
    from hypothesis import strategies as st

    files = _valid_files(h, w)

    def flip(data: bytes, spots: list[tuple[int, int]]) -> bytes:
        b = bytearray(data)
        for pos, val in spots:
            b[pos % len(b)] = val
        return bytes(b)

    def reheader(data: bytes, width: int, height: int, depth: int, color: int, interlace: int) -> bytes:
        return PNG_SIGNATURE + png_ihdr(width, height, depth, color, interlace) + data[33:]

    def splice(data: bytes, kind: bytes, body: bytes, where: int) -> bytes:
        cut = 33 + (where % max(1, len(data) - 45))
        return data[:cut] + png_chunk(kind, body) + data[cut:]

    def new_idat(data: bytes, body: bytes, deflate: bool) -> bytes:
        payload = zlib.compress(body) if deflate else body
        return data[:33] + png_chunk(b"IDAT", payload) + png_chunk(b"IEND", b"")

    png = st.sampled_from(files[:2])
    any_file = st.sampled_from(files)
    return st.one_of(
        st.binary(max_size=4096),
        st.builds(lambda d, n: d[:n], any_file, st.integers(0, 4096)),
        st.builds(flip, any_file, st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)),
        st.builds(
            reheader,
            png,
            st.one_of(st.just(w), st.integers(0, 1 << 16)),
            st.one_of(st.just(h), st.integers(0, 1 << 16)),
            st.sampled_from([0, 1, 2, 3, 4, 8, 16, 32]),
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),
            st.integers(0, 2),
        ),
        st.builds(
            splice,
            png,
            st.sampled_from([b"IDAT", b"PLTE", b"tRNS", b"zTXt", b"iCCP", b"IEND", b"abcd"]),
            st.binary(max_size=512),
            st.integers(0, 1 << 16),
        ),
        st.builds(new_idat, png, st.binary(max_size=8192), st.booleans()),
    )


def fuzz_decoders(examples: int = 2000, h: int = 64, w: int = 128, seed: int = 0) -> dict:
    """Run ``examples`` inputs through the label and photo decoders; returns counts and findings."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    decoders = {
        "label": (LabelPngDecoder("cityscapes", h, w, 35), (1, h, w)),
        "photo": (PhotoDecoder(h, w), (h, w, 3)),
    }
    counts = {"examples": 0, "decoded": 0, "refused": 0}
    findings: list[str] = []
    refusals: dict[str, int] = {}

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_strategies(h, w))
    def check(data: bytes) -> None:
        counts["examples"] += 1
        for name, (decoder, shape) in decoders.items():
            try:
                out = decoder.decode(data)
            except LabelError as e:
                counts["refused"] += 1
                text = str(e)
                key = re.sub(r"\d+", "N", text.split(":")[0])[:70]
                refusals[key] = refusals.get(key, 0) + 1
                assert "\n" not in text and text, f"{name}: multi-line or empty refusal {text!r}"
                continue
            except Exception as e:
                raise AssertionError(f"{name}: {type(e).__name__}: {e}") from None
            counts["decoded"] += 1
            assert out.shape == shape and out.dtype in (np.uint8, np.int32), f"{name}: decoded {out.shape} {out.dtype}"

    started = time.perf_counter()
    try:
        check()
    except AssertionError as e:
        findings.append(str(e).strip().splitlines()[0][:300])
    except Exception as e:  # hypothesis reports a failing example with its own exception types
        findings.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
    counts.update(
        seconds=round(time.perf_counter() - started, 1),
        findings=findings,
        refusal_kinds=dict(sorted(refusals.items(), key=lambda kv: -kv[1])[:12]),
    )
    return counts
