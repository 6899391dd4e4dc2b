"""ONNX adapter (onnxruntime): ``--adapter onnx --model FILE.onnx``.

White-box when the graph allows it: the single output must come from a final ``Gemm`` or
``MatMul`` (+ ``Add``) whose weight (and bias) are initializers; W and b are read from them,
and the head's input is added as an extra graph output so the features come from the same
session run. Otherwise (quantised or fused heads, several outputs) the model is black-box:
logits only, and the white-box audit says so.

Input: NCHW float32, normalised with ImageNet statistics unless the adapter options say
otherwise; a fixed spatial size in the graph is honoured by resizing; a fixed batch size by
running in chunks of that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adapters.base import AdapterOptions, InputSpec
from auditkit.device import resolve_device
from auditkit.errors import AuditkitError
from auditkit.fsutil import sha256_file


@dataclass(frozen=True)
class _Head:
    feature_name: str
    weight: np.ndarray  # [C, d]
    bias: np.ndarray  # [C]


def _find_head(graph) -> _Head | None:  # type: ignore[no-untyped-def]
    from onnx import numpy_helper

    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(graph.output[0].name)
    bias = None
    if node is not None and node.op_type == "Add":
        constant = [name for name in node.input if name in initializers]
        other = [name for name in node.input if name not in initializers]
        if len(constant) == 1 and len(other) == 1:
            bias, node = initializers[constant[0]], producers.get(other[0])
    if node is None or node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in initializers:
        return None
    weight = initializers[node.input[1]].astype(np.float64)
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        if attributes.get("transA") is not None and attributes["transA"].i:
            return None
        alpha = attributes["alpha"].f if "alpha" in attributes else 1.0
        beta = attributes["beta"].f if "beta" in attributes else 1.0
        weight = (weight if ("transB" in attributes and attributes["transB"].i) else weight.T) * alpha
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in initializers:
                return None
            bias = initializers[node.input[2]].astype(np.float64) * beta
    else:
        weight = weight.T  # MatMul(x, W) with W [d, C]
    if weight.ndim != 2:
        return None
    if bias is None:
        bias = np.zeros(weight.shape[0])
    return _Head(node.input[0], weight, np.broadcast_to(np.asarray(bias, np.float64).ravel(), (weight.shape[0],)).copy())


class OnnxModel:
    """An onnxruntime session; white-box when ``head`` is known."""

    def __init__(self, path: Path, options: AdapterOptions) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(path))
        except Exception as exc:  # DecodeError and friends
            raise AuditkitError(f"{path} is not an ONNX model ({exc.__class__.__name__}); check --model/--adapter") from None
        graph = model.graph
        if len(graph.output) != 1:
            raise AuditkitError(
                f"{path} has {len(graph.output)} outputs; auditkit needs one logits output: re-export the model with only the logits"
            )
        inputs = [i for i in graph.input if i.name not in {init.name for init in graph.initializer}]
        if len(inputs) != 1:
            raise AuditkitError(f"{path} has {len(inputs)} inputs; auditkit needs one image input (NCHW)")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise AuditkitError(f"{path} takes a {len(dims)}-d input; auditkit needs NCHW images")
        self.head = _find_head(graph)
        if self.head is not None:
            graph.output.append(onnx.helper.make_tensor_value_info(self.head.feature_name, onnx.TensorProto.FLOAT, None))
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if resolve_device(options.device).type == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(model.SerializeToString(), providers=providers)
        self.input_name = inputs[0].name
        self.batch = dims[0]  # None: dynamic
        size = (dims[2], dims[3]) if dims[2] and dims[3] else None
        base = options.input_spec or InputSpec()
        self.input_spec = InputSpec(mean=base.mean, std=base.std, size=size or base.size)
        self.device = torch.device("cpu")
        self.description = f"onnx:{path.name}" + ("" if self.head is not None else " (black-box: no linear head found)")
        self.digest = sha256_file(path)
        probe = self._run(torch.zeros(1, 3, *(size or (32, 32))))
        self.num_classes = int(probe[0].shape[1])
        if self.head is not None:
            self.feature_dim = int(self.head.weight.shape[1])

    def _run(self, images: torch.Tensor) -> list[np.ndarray]:
        x = self.input_spec.normalize(images.float().cpu())
        if self.input_spec.size is not None and tuple(x.shape[-2:]) != self.input_spec.size:
            x = F.interpolate(x, size=self.input_spec.size, mode="bilinear", align_corners=False)
        array = x.numpy().astype(np.float32)
        step = self.batch or len(array)
        chunks = [self.session.run(None, {self.input_name: array[i : i + step]}) for i in range(0, len(array), step)]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run(images)[0])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise AuditkitError(f"{self.description}: the classifier head could not be located, features are unavailable")
        features = self._run(images)[1]
        return torch.from_numpy(features.reshape(features.shape[0], -1))

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        if self.head is None:
            raise AuditkitError(f"{self.description}: the classifier head could not be located")
        return self.head.weight, self.head.bias


class OnnxBlackBox:
    """The same session exposed as logits only (when no linear head was found)."""

    def __init__(self, model: OnnxModel) -> None:
        self._model = model
        self.description, self.digest, self.num_classes = model.description, model.digest, model.num_classes

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self._model.logits(images)


def load_model(location: str, options: AdapterOptions) -> OnnxModel | OnnxBlackBox:
    """Adapter entry point: white-box when the head was found, else black-box."""
    path = Path(location)
    if not path.is_file():
        raise AuditkitError(f"model file {path} does not exist")
    model = OnnxModel(path, options)
    return model if model.head is not None else OnnxBlackBox(model)
