"""keras.ops: the common part of Keras 3's namespace. On arrays each function computes at once,
on NumPy or CuPy; on symbolic tensors (inside a functional model, a custom layer's call, a
Lambda or a subclassed model's call) it records a graph node whose backward is written by
hand beside its forward, as every layer's is. Anything outside the set fails naming itself.

minicnn's own maths over xp, which the layers use, is ``minicnn.maths``.
"""

from minicnn._missing import not_implemented
from minicnn.ops.arrays import (
    argmax,
    argmin,
    concatenate,
    expand_dims,
    get_item,
    max,
    mean,
    min,
    reshape,
    split,
    squeeze,
    stack,
    std,
    sum,
    take,
    transpose,
    var,
)
from minicnn.ops.creation import (
    arange,
    cast,
    convert_to_numpy,
    convert_to_tensor,
    eye,
    full,
    full_like,
    ones,
    ones_like,
    shape,
    zeros,
    zeros_like,
)
from minicnn.ops.linalg import dot, einsum, matmul
from minicnn.ops.math import (
    abs,
    absolute,
    add,
    ceil,
    clip,
    cos,
    divide,
    equal,
    exp,
    expm1,
    floor,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    reciprocal,
    round,
    sign,
    sin,
    sqrt,
    square,
    subtract,
    tanh,
    true_divide,
    where,
)
from minicnn.ops.nn import (
    elu,
    gelu,
    hard_sigmoid,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    one_hot,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    softsign,
    swish,
)

__all__ = sorted(n for n, v in list(globals().items()) if callable(v) and not n.startswith("_") and n != "not_implemented")  # fmt: skip

__getattr__ = not_implemented("keras.ops (minicnn.ops)", f"Available: {', '.join(sorted(__all__))}")
