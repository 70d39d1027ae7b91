"""Label sets (Cityscapes, ADE20K, COCO-Stuff, a user's own file) and label-map conversions.

A LabelSet's ids are the generator's channel indices; this package maps what people and datasets have
(annotation file values, painted colors, train ids, PNG files) to those ids and back, and rejects
anything it does not know with a ``LabelError`` naming the value, its pixel count and the set.
"""

from .builtin import BUILTIN_NAMES, ade20k, bit_interleave_color, cityscapes, coco_stuff, get_label_set
from .custom import label_set_from_dict, load_label_set_file
from .labelmap import as_batch, check_ids, fit_nearest, nearest_indices, resize_nearest
from .labelset import LabelSet
from .png import (
    decode_image,
    encode_png,
    instance_edges_np,
    label_image_to_ids,
    read_instance_png,
    read_label_png,
    read_photo,
    to_rgb8,
    write_color_png,
    write_id_png,
)
from .schema import FILE_CONVENTIONS, IGNORE, LabelClass

__all__ = [
    "BUILTIN_NAMES",
    "FILE_CONVENTIONS",
    "IGNORE",
    "LabelClass",
    "LabelSet",
    "ade20k",
    "as_batch",
    "bit_interleave_color",
    "check_ids",
    "cityscapes",
    "coco_stuff",
    "decode_image",
    "to_rgb8",
    "encode_png",
    "fit_nearest",
    "get_label_set",
    "instance_edges_np",
    "label_image_to_ids",
    "label_set_from_dict",
    "load_label_set_file",
    "nearest_indices",
    "read_instance_png",
    "read_label_png",
    "read_photo",
    "resize_nearest",
    "write_color_png",
    "write_id_png",
]
