"""Hostile and broken inputs for the serving stack: what the tests and ``benchmarks/reliability.py`` send.

Each maker returns bytes built from scratch (no files), so a check can be rerun anywhere. Two kinds of
PNG bomb: ``png_header_bomb`` claims a huge size in its header (refused from the header);
``png_idat_bomb`` has an honest, small header but pixel data that inflates far past it (refused while
inflating). The IDAT bomb is assembled from one compressed block repeated after full flushes, so a
2 GiB bomb takes milliseconds to build rather than the seconds of compressing 2 GiB.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_ihdr(width: int, height: int, depth: int = 8, color: int = 0, interlace: int = 0) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))


def png_header_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header claims ``width x height`` gray pixels (zeros compress ~1000x)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()  # the first rows only
    return PNG_SIGNATURE + png_ihdr(width, height) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def zeros_deflate(total: int, block: int = 1 << 24) -> bytes:
    """A zlib stream of ``total`` zero bytes (a multiple of ``block``), with a correct Adler-32."""
    if total % block:
        raise ValueError(f"total {total} must be a multiple of block {block}")
    c = zlib.compressobj(9)
    zeros = b"\x00" * block
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    unit = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)  # after a full flush, every block encodes alike
    tail = c.flush()[:-4]
    adler = ((total % 65521) << 16) | 1  # Adler-32 of zeros: a = 1, b = n mod 65521
    return first + unit * (total // block - 1) + tail + struct.pack(">I", adler)


def png_idat_bomb(width: int = 512, height: int = 256, inflated: int = 2 << 30, idat_size: int = 1 << 20) -> bytes:
    """A ``width x height`` 8-bit gray PNG (an honest header) whose IDAT data inflates to ``inflated``
    bytes: 2 GiB by default, about 2 MB on the wire, split into IDAT chunks of ``idat_size``."""
    stream = zeros_deflate(inflated)
    chunks = b"".join(png_chunk(b"IDAT", stream[i : i + idat_size]) for i in range(0, len(stream), idat_size))
    return PNG_SIGNATURE + png_ihdr(width, height) + chunks + png_chunk(b"IEND", b"")
