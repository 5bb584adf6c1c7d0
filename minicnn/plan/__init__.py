"""How a model's graph runs: the order of its calls (``graph``), the steps they become, fused
where the maths allows (``steps``), and the plan that decides them once per input shape and
mode and runs them forward and backward (``plan``). The layers' maths never learns of any of
it, as ONNX Runtime's graph transformers leave the operators' definitions alone."""

from minicnn.plan.graph import Graph, flatten
from minicnn.plan.plan import SMALL_BATCH, Plan

__all__ = ["SMALL_BATCH", "Graph", "Plan", "flatten"]
