"""A recording stand-in for the slice of the TensorRT 10 Python API that ``tensorrt_build`` drives.

Only for machines without TensorRT: it lets the build code path run end to end (parser -> flags ->
profile -> FP32 pins -> timing cache -> plan + card) and records what was asked of TensorRT, so the
test can check the wiring. The real API is exercised by the skipped-here GPU tests.
"""

from __future__ import annotations

import enum
import json
import types

import onnx

FLOAT_OPS = {
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Add",
    "Mul",
    "Resize",
    "Tanh",
    "Concat",
    "Pad",
    "Round",
    "Clip",
    "Transpose",
    "Split",
    "Slice",
    "Identity",
    "Sub",
    "Div",
}


class DataType(enum.Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    int32 = "int32"


class _Tensor:
    def __init__(self, dtype):
        self.dtype = dtype


class _Layer:
    def __init__(self, node: onnx.NodeProto):
        self.name = node.name
        self.metadata = f"[ONNX Layer: {node.name}]"
        out = DataType.float32 if node.op_type in FLOAT_OPS else DataType.int32
        self._outputs = [_Tensor(out) for _ in node.output]
        self.precision = None
        self.output_types = {}

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_output(self, i):
        return self._outputs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class _Network:
    def __init__(self):
        self.layers = []

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class _Parser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse_from_file(self, path):
        self.network.layers = [_Layer(n) for n in onnx.load(path).graph.node]
        return True


class _Cache:
    def __init__(self, data: bytes):
        self.data = data or b"timing:"

    def serialize(self):
        return self.data + b"+"


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Config:
    def __init__(self):
        self.flags, self.profiles, self.cache, self.read_cache = set(), [], None, None

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def add_optimization_profile(self, p):
        self.profiles.append(p)

    def create_timing_cache(self, data):
        self.read_cache = data
        return _Cache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache

    def get_timing_cache(self):
        return self.cache


class _Builder:
    last = None

    def __init__(self, logger):
        _Builder.last = self

    def create_network(self, flags):
        self.network = _Network()
        return self.network

    def create_builder_config(self):
        self.config = _Config()
        return self.config

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        pinned = [l.name for l in network.layers if l.precision is DataType.float32]
        return json.dumps({"plan": True, "pinned": pinned}).encode()


class _ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass


def fake_tensorrt() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-standin"
    trt.float32, trt.float16, trt.bfloat16 = DataType.float32, DataType.float16, DataType.bfloat16
    trt.ILogger = _ILogger
    trt.Builder = _Builder
    trt.OnnxParser = _Parser
    trt.BuilderFlag = enum.Enum("BuilderFlag", "FP16 BF16 OBEY_PRECISION_CONSTRAINTS")
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    return trt


class FakeCuda:
    def __init__(self, device=0):
        pass

    def device_info(self):
        return {"gpu": "Stand-in GPU", "compute_capability": "9.0"}
