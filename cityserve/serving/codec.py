"""PNG in and out of the served models, with the checks that keep bad input from hurting a server.

The python-backend models ``decode_png`` / ``encode_png`` / ``prepare_render`` are thin wrappers
around these classes, so everything here is tested without a server. Every failure is a
``LabelError`` whose one-line message names the problem (not a PNG, truncated, too large, wrong size,
a color or id the label set does not have).

PNG bombs are refused twice before OpenCV sees them: a header claiming more than ``max_pixels`` is
refused outright, and the pixel data (IDAT chunks) is inflated as a stream, discarding the output, and
refused as soon as it exceeds the exact size the header allows (``png_check_inflated``). A 256x512 PNG
whose 2 MB of IDAT inflate to 2 GiB therefore costs the milliseconds of inflating 128 KiB, not the
seconds of inflating 2 GiB, and the request queued behind it is not held up. (Compressed ancillary
chunks, zTXt / iTXt / iCCP, are bounded by libpng itself: it stops inflating them at its own limit.)
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any, Optional

import cv2
import numpy as np

from ..card_sections import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ..errors import LabelError
from ..labels import decode_image, get_label_set
from ..labels.labelmap import check_ids, resize_nearest
from ..labels.png import label_image_to_ids, to_rgb8

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
_PNG_COLOR_TYPES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # color type -> channels (3 = palette index)


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    format: str  # "png" | "jpeg"
    width: int
    height: int
    channels: int
    bit_depth: int


def png_header(data: bytes) -> ImageHeader:
    """Width, height, channels and bit depth from a PNG's IHDR chunk (the first chunk), checked for
    consistency (CRC, known color type and bit depth) without decoding any pixel."""
    if len(data) < 33:
        raise LabelError(f"not a PNG: {len(data)} bytes is shorter than a PNG header")
    if data[:8] != PNG_SIGNATURE:
        raise LabelError(f"not a PNG: the data starts with {data[:8]!r}, not the PNG signature")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise LabelError("malformed PNG: the first chunk is not a 13-byte IHDR")
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) & 0xFFFFFFFF != crc:
        raise LabelError("malformed PNG: IHDR checksum mismatch (corrupt header)")
    width, height, depth, color, _comp, _filt, _interlace = struct.unpack(">IIBBBBB", body)
    if width == 0 or height == 0:
        raise LabelError(f"malformed PNG: header says {width}x{height} pixels")
    if color not in _PNG_COLOR_TYPES or depth not in (1, 2, 4, 8, 16):
        raise LabelError(f"malformed PNG: unknown color type {color} / bit depth {depth}")
    return ImageHeader("png", width, height, _PNG_COLOR_TYPES[color], depth)


def png_raw_size(header: ImageHeader, interlaced: bool = False) -> int:
    """Bytes of filtered scanlines (a filter byte + the packed pixels per row) a PNG of this header
    inflates to: exactly this much, for every valid file. Adam7 images sum their seven passes."""
    bits = header.channels * header.bit_depth
    passes = (
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        if interlaced
        else [(0, 0, 1, 1)]
    )
    total = 0
    for x0, y0, dx, dy in passes:  # first column, first row, column step, row step
        cols = (header.width - x0 + dx - 1) // dx if header.width > x0 else 0
        rows = (header.height - y0 + dy - 1) // dy if header.height > y0 else 0
        if cols and rows:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total


_INFLATE_STEP = 1 << 20  # inflate at most this much per call: memory stays flat whatever the data says


def png_check_inflated(data: bytes, header: Optional[ImageHeader] = None) -> int:
    """Inflate the IDAT stream, discarding the output, and refuse it the moment it exceeds what the
    header allows (a decompression bomb). Returns the inflated byte count. Work and memory are bounded
    by the header's size, never by the data; short or corrupt streams are left to the decoder to
    report (as truncated)."""
    header = header or png_header(data)
    interlaced = data[28] == 1
    limit = png_raw_size(header, interlaced)
    view = memoryview(data)
    inflater = zlib.decompressobj()
    total, pos, n = 0, 8, len(data)
    while pos + 8 <= n:
        length, kind = struct.unpack(">I4s", view[pos : pos + 8])
        start, end = pos + 8, min(pos + 8 + length, n)
        pos = pos + 12 + length
        if kind == b"IEND":
            break
        if kind != b"IDAT":
            continue
        pending = view[start:end]
        while pending:
            try:
                out = inflater.decompress(pending, min(_INFLATE_STEP, limit + 1 - total))
            except zlib.error:
                return total  # corrupt stream: the decoder names it
            total += len(out)
            if total > limit:
                raise LabelError(
                    f"PNG pixel data inflates past the {limit} bytes its {header.width}x{header.height} "
                    f"header allows (a decompression bomb, or data that is not this header's): refused after "
                    f"inflating {total} bytes"
                )
            if inflater.eof:
                return total
            pending = inflater.unconsumed_tail
    return total


def jpeg_header(data: bytes) -> ImageHeader:
    """Width and height from a JPEG's start-of-frame marker (scanning the marker segments only)."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise LabelError(f"malformed JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
        if seg_len < 2:
            raise LabelError(f"malformed JPEG: marker 0xFF{marker:02X} has segment length {seg_len}")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 + 1 > n:
                break
            depth, height, width, comps = struct.unpack(">BHHB", data[i + 4 : i + 10])
            if width == 0 or height == 0:
                raise LabelError(f"malformed JPEG: frame header says {width}x{height} pixels")
            return ImageHeader("jpeg", width, height, comps, depth)
        if marker == 0xDA:  # start of scan before a frame header
            break
        i += 2 + seg_len
    raise LabelError("malformed or truncated JPEG: no frame header with the image size")


def image_header(data: bytes, allow_jpeg: bool = False) -> ImageHeader:
    if allow_jpeg and data[:3] == JPEG_SOI:
        return jpeg_header(data)
    return png_header(data)


def check_length(data: bytes, max_bytes: int, what: str) -> None:
    """The first check of every decoder of request bytes (label PNG, photo, depth map): their length."""
    if len(data) > max_bytes:
        raise LabelError(f"{what} is {len(data)} bytes, over the configured maximum of {max_bytes}")


def check_size(header: ImageHeader, max_pixels: int, what: str) -> None:
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise LabelError(
            f"{what} is {header.width}x{header.height} ({pixels / 1e6:.1f} Mpx), over the configured "
            f"maximum of {max_pixels / 1e6:.1f} Mpx ({max_pixels} pixels); refused before decoding"
        )


def as_bytes(item: Any) -> bytes:
    """One element of a Triton BYTES tensor (bytes, or numpy's object/bytes_ scalar) -> bytes."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    if isinstance(item, str):
        raise LabelError("expected PNG bytes, got text (send the file's bytes, not its name)")
    return bytes(item)


@dataclasses.dataclass
class LabelPngDecoder:
    """Label PNG bytes -> ids [1, H, W] of a label set, checked against a model.

    A 1-channel PNG holds file values in the set's convention, a 3/4-channel PNG palette colors
    (``nearest`` snaps to the nearest palette color). The PNG must be exactly ``height`` x ``width``:
    label maps are never silently resized. Ids must be below ``num_classes`` (the model's channels).
    """

    label_set: Any
    height: int
    width: int
    num_classes: int
    dtype: Any = np.uint8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    nearest: bool = False

    def __post_init__(self) -> None:
        self.label_set = get_label_set(self.label_set)
        self.dtype = np.dtype(self.dtype)

    def decode(self, data: bytes) -> np.ndarray:
        check_length(data, self.max_bytes, "label PNG")
        header = png_header(data)
        check_size(header, self.max_pixels, "label PNG")
        if (header.height, header.width) != (self.height, self.width):
            raise LabelError(
                f"label PNG is {header.height}x{header.width} (HxW) but the model renders "
                f"{self.height}x{self.width}; resize the label map with nearest-neighbour first"
            )
        png_check_inflated(data, header)
        try:
            img, _ = decode_image(data)
            # ids the set lacks but the model has channels for (official SPADE Cityscapes: 35 channels for
            # ids 0..33) are accepted, as SPADE's loader and `cityserve render` do
            ids = label_image_to_ids(img, self.label_set, self.nearest, num_channels=self.num_classes)
        except LabelError as e:
            raise LabelError(str(e).replace("label map (bytes): ", "")) from None
        if ids.shape != (self.height, self.width):
            raise LabelError(f"label PNG decoded to shape {ids.shape}, expected {self.height}x{self.width}")
        check_ids(
            ids,
            self.num_classes,
            f"a model with {self.num_classes} label channels of label set {self.label_set.name!r}",
        )
        return ids.astype(self.dtype)[None]


@dataclasses.dataclass
class PhotoDecoder:
    """Photo PNG (or JPEG) bytes -> RGB uint8 [H, W, 3] at the segmenter's size (area-resized when the
    photo has another size: photos, unlike label maps, may be resized)."""

    height: int
    width: int
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def decode(self, data: bytes) -> np.ndarray:
        check_length(data, self.max_bytes, "photo")
        header = image_header(data, allow_jpeg=True)
        check_size(header, self.max_pixels, "photo")
        if header.format == "png":
            png_check_inflated(data, header)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise LabelError(
                f"photo {header.format.upper()} ({len(data)} bytes) does not decode: malformed or truncated"
            )
        img = to_rgb8(img, "photo")
        if img.shape[:2] != (self.height, self.width):
            shrink = img.shape[0] > self.height or img.shape[1] > self.width
            img = cv2.resize(
                img, (self.width, self.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        return np.ascontiguousarray(img)


def encode_rgb_png(image: np.ndarray, compression: int = 1) -> bytes:
    """uint8 RGB [H, W, 3] -> PNG bytes (zlib level ``compression``: 1 is fast, 9 small)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise LabelError(f"an image to encode must be uint8 [H, W, 3], not {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(
        ".png", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    )
    if not ok:
        raise LabelError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def decode_rgb_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 RGB [H, W, 3] (for clients reading the server's photos)."""
    png_check_inflated(data, png_header(data))
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise LabelError(f"PNG of {len(data)} bytes does not decode")
    return np.ascontiguousarray(img[..., ::-1])


@dataclasses.dataclass
class LabelPngEncoder:
    """Ids [1, H, W] -> (id PNG in the set's file convention: lossless; color PNG: for people)."""

    label_set: Any
    compression: int = 1

    def __post_init__(self) -> None:
        self.label_set = get_label_set(self.label_set)

    def encode(self, ids: np.ndarray) -> tuple[bytes, bytes]:
        ids = np.asarray(ids)
        if ids.ndim == 3 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 2:
            raise LabelError(f"a label map to encode must be [1, H, W] or [H, W], not shape {ids.shape}")
        flag = [cv2.IMWRITE_PNG_COMPRESSION, int(self.compression)]
        ok1, id_png = cv2.imencode(".png", np.ascontiguousarray(self.label_set.ids_to_file(ids)), flag)
        ok2, color_png = cv2.imencode(".png", np.ascontiguousarray(self.label_set.ids_to_colors(ids)[..., ::-1]), flag)
        if not (ok1 and ok2):
            raise LabelError(f"cannot encode a label map of shape {ids.shape} as PNG")
        return id_png.tobytes(), color_png.tobytes()


@dataclasses.dataclass
class RenderInputs:
    """Ids [1, h, w] -> the render graph's inputs: ids at the generator's size (nearest-resized when a
    segmenter of another size produced them), instances (one instance per class: edges at class
    boundaries, as ``Renderer`` does without an instance map), and a N(0, 1) style latent."""

    height: int
    width: int
    num_classes: int
    dtype: Any = np.uint8
    use_instance: bool = False
    z_dim: int = 0
    seed: Optional[int] = None
    latent: str = "random"  # "random": N(0, 1) per request; "zero": the mean latent (deterministic)

    def __post_init__(self) -> None:
        self.dtype = np.dtype(self.dtype)
        self._rng = np.random.default_rng(self.seed)

    def prepare(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(ids)
        if ids.ndim == 3:
            ids = ids[0]
        if ids.shape != (self.height, self.width):
            ids = resize_nearest(ids, self.height, self.width)
        check_ids(ids, self.num_classes)
        out = {"labels": ids.astype(self.dtype)[None]}
        if self.use_instance:
            out["instances"] = ids.astype(np.int32)[None]
        if self.z_dim:
            out["z"] = (
                np.zeros(self.z_dim, np.float32)
                if self.latent == "zero"
                else self._rng.standard_normal(self.z_dim).astype(np.float32)
            )
        return out
