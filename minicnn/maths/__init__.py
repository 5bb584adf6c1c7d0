"""The maths of the layers, written once over an array module ``xp`` (NumPy or CuPy).

Layout is channels-last throughout: images ``(N, H, W, C)``, kernels ``(kh, kw, C, F)``. One
module per idea, each op's forward and backward side by side:

- ``geometry``: output sizes, "same" padding, ``pad``, cache-sized chunks;
- ``conv``: which convolution algorithm fits a geometry, and one forward/backward that hands the
  work to it: ``conv/im2col.py``, ``conv/shifted.py``, ``conv/direct.py``, ``conv/winograd.py``;
- ``pooling``, ``normalization`` (batch norm), ``resample`` (the augmentations' affine maps),
  ``softmax`` (the losses' maths), ``optimizer`` (update rules), ``elementwise`` (bias + ReLU,
  the gradient products and sums);
- ``dispatch``: the one place an op asks ``minicnn.kernels`` for a hand-written version.

Everything the layers, losses and optimizers use is re-exported here, so they write
``maths.conv2d_forward(...)`` and never ask where it lives.
"""

from minicnn.maths.conv import (
    choose_algorithm,
    conv2d_backward,
    conv2d_forward,
    conv2d_pooled,
    conv2d_residual,
    conv_algorithm,
)
from minicnn.maths.conv.direct import conv_direct, conv_direct_grad, conv_direct_grad_input
from minicnn.maths.conv.im2col import col2im, im2col
from minicnn.maths.conv.transpose import transpose_backward as conv2d_transpose_backward
from minicnn.maths.conv.transpose import transpose_forward as conv2d_transpose_forward
from minicnn.maths.conv.winograd import (
    placed_grid,
    placed_grid_adjoint,
    winograd_grad_input,
    winograd_grad_output,
    winograd_input,
    winograd_output,
)
from minicnn.maths.depthwise import depthwise_backward, depthwise_forward
from minicnn.maths.elementwise import (
    bias_relu,
    dropout,
    dropout_backward,
    matmul_tn,
    relu_backward,
    relu_backward_sum,
    shaped_dropout,
    spatial_dropout,
    spatial_dropout_backward,
    sum_rows,
)
from minicnn.maths.geometry import (
    conv_output_length,
    conv_output_shape,
    pad,
    padding_amounts,
    same_padding,
)
from minicnn.maths.layernorm import layernorm_backward, layernorm_forward
from minicnn.maths.normalization import (
    batchnorm_affine,
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference,
    channel_affine,
)
from minicnn.maths.optimizer import adam_update, ema_update
from minicnn.maths.pooling import (
    avgpool_backward,
    avgpool_forward,
    maxpool,
    maxpool_backward,
    maxpool_forward,
)
from minicnn.maths.resample import (
    FILL_MODES,
    INTERPOLATIONS,
    affine_resample,
    affine_resample_backward,
    elastic_points,
    gaussian_blur_maps,
    point_resample,
    point_resample_backward,
)
from minicnn.maths.softmax import softmax, softmax_cross_entropy
from minicnn.maths.special import erf
from minicnn.maths.upsample import bilinear_backward as upsample_bilinear_backward
from minicnn.maths.upsample import bilinear_forward as upsample_bilinear
from minicnn.maths.upsample import nearest_backward as upsample_nearest_backward
from minicnn.maths.upsample import nearest_forward as upsample_nearest

__all__ = [
    "FILL_MODES",
    "INTERPOLATIONS",
    "adam_update",
    "affine_resample",
    "affine_resample_backward",
    "elastic_points",
    "gaussian_blur_maps",
    "point_resample",
    "point_resample_backward",
    "avgpool_backward",
    "avgpool_forward",
    "batchnorm_affine",
    "batchnorm_backward",
    "batchnorm_forward",
    "batchnorm_inference",
    "channel_affine",
    "bias_relu",
    "choose_algorithm",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_pooled",
    "conv2d_residual",
    "conv2d_transpose_backward",
    "conv2d_transpose_forward",
    "conv_algorithm",
    "conv_direct",
    "conv_direct_grad",
    "conv_direct_grad_input",
    "conv_output_length",
    "conv_output_shape",
    "depthwise_backward",
    "depthwise_forward",
    "dropout",
    "dropout_backward",
    "ema_update",
    "erf",
    "im2col",
    "layernorm_backward",
    "layernorm_forward",
    "matmul_tn",
    "maxpool",
    "maxpool_backward",
    "maxpool_forward",
    "pad",
    "padding_amounts",
    "relu_backward",
    "relu_backward_sum",
    "same_padding",
    "softmax",
    "softmax_cross_entropy",
    "shaped_dropout",
    "spatial_dropout",
    "spatial_dropout_backward",
    "sum_rows",
    "upsample_bilinear",
    "upsample_bilinear_backward",
    "upsample_nearest",
    "upsample_nearest_backward",
    "placed_grid",
    "placed_grid_adjoint",
    "winograd_grad_input",
    "winograd_grad_output",
    "winograd_input",
    "winograd_output",
]
