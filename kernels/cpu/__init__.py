"""CPU kernels in numba (``cache=True``: compiled once, then loaded from disk), one module an idea.

Each function mirrors the plain array version in ``minicnn/maths/``, the reference the tests
compare it with. What they win over NumPy: one pass over memory instead of one per kernel offset
(im2col, col2im, pooling), fused elementwise work (bias + ReLU, Adam), and both cores.
Parallel loops split over independent rows or images, so no two threads write the same element.
"""

from __future__ import annotations

from . import (  # each imports .jit first
    activation,
    depthwise,
    direct,
    elementwise,
    im2col,
    normalization,
    pooling,
    resample,
    winograd,
    winograd_fused,
    winograd_grad,
)

# The ops served on the CPU, each for float32 and float64 ("any"), written out as cuda.py's table
# is; the rest (matmul_tn, sum_rows, affine_resample_backward) run as NumPy code.
OPS = {
    ("im2col", "any"): im2col.im2col,
    ("col2im", "any"): im2col.col2im,
    ("maxpool_forward", "any"): pooling.maxpool_forward,
    ("maxpool", "any"): pooling.maxpool,
    ("maxpool_backward", "any"): pooling.maxpool_backward,
    ("bias_relu", "any"): elementwise.bias_relu,
    ("relu_backward", "any"): elementwise.relu_backward,
    ("relu_backward_sum", "any"): elementwise.relu_backward_sum,
    ("softmax_cross_entropy", "any"): elementwise.softmax_cross_entropy,
    ("adam_update", "any"): elementwise.adam_update,
    ("ema_update", "any"): elementwise.ema_update,
    ("dropout", "any"): elementwise.dropout,
    ("dropout_backward", "any"): elementwise.dropout_backward,
    ("conv_direct", "any"): direct.conv_direct,
    ("conv_direct_pool", "any"): direct.conv_direct_pool,
    ("conv_direct_grad", "any"): direct.conv_direct_grad,
    ("conv_direct_grad_input", "any"): direct.conv_direct_grad_input,
    ("winograd_input", "any"): winograd.winograd_input,
    ("winograd_output", "any"): winograd.winograd_output,
    ("winograd_input_serial", "any"): winograd.winograd_input_serial,
    ("winograd_output_serial", "any"): winograd.winograd_output_serial,
    ("winograd_fused", "any"): winograd_fused.winograd_fused,
    ("winograd_grad_output", "any"): winograd_grad.winograd_grad_output,
    ("winograd_grad_input", "any"): winograd_grad.winograd_grad_input,
    ("winograd_grad_output_serial", "any"): winograd_grad.winograd_grad_output_serial,
    ("winograd_grad_input_serial", "any"): winograd_grad.winograd_grad_input_serial,
    ("batchnorm_forward", "any"): normalization.batchnorm_forward,
    ("batchnorm_backward", "any"): normalization.batchnorm_backward,
    ("channel_affine", "any"): normalization.channel_affine,
    ("affine_resample", "any"): resample.affine_resample,
    ("erf", "any"): activation.erf,
    ("depthwise_conv", "any"): depthwise.depthwise_conv,
    ("depthwise_conv_backward", "any"): depthwise.depthwise_conv_backward,
}
