"""Reference quantized arithmetic: the project's own statement of what each quantized op computes.

``primitives`` are checked entry points to the C++ kernels (harness._kernels); ``ops`` compose
them into the ops a quantized model runs (linear, conv, observers' qparams, dynamic linear and
RNNs, embeddings); ``modules`` swaps a quantized model's quantized modules for those ops;
``calls`` does the quantized calls a model's code makes (quantized::*, quantize / dequantize);
and ``graphs`` runs any model on them (``reference_output``): an eager tree directly, an FX
GraphModule through torch.fx's Interpreter, a TorchScript or lite module under a dispatch mode,
an observer by its qparams rule.
"""

from harness.reference.graphs import ReferenceInterpreter, ReferenceMode, reference_output
from harness.reference.modules import Unsupported, reference_model
from harness.reference.ops import (
    FBGEMM,
    SMALL_SCALE,
    Rules,
    choose_qparams,
    conv_nd,
    dynamic_linear,
    dynamic_linear_fp16,
    dynamic_cell,
    dynamic_lstm,
    dynamic_rnn,
    fbgemm_saturates_pairs,
    linear,
    minmax_observer_qparams,
    moving_average_minmax,
    observer_output,
    per_channel_minmax_qparams,
    rowwise_table,
)
from harness.reference.primitives import (
    DTYPES,
    conv,
    dequantize,
    embedding_bag_rowwise,
    fma_columns,
    fp16_round,
    kernels,
    linear_u8s8,
    matmul_u8s8,
    quantize,
    requantize_float,
    requantize_q31,
    rowwise_quantize,
)

__all__ = ["DTYPES", "FBGEMM", "SMALL_SCALE", "ReferenceInterpreter", "ReferenceMode", "Rules", "Unsupported", "choose_qparams", "conv", "conv_nd",
           "dequantize", "dynamic_cell", "dynamic_linear", "dynamic_linear_fp16", "dynamic_lstm", "dynamic_rnn", "embedding_bag_rowwise",
           "fbgemm_saturates_pairs", "fma_columns", "fp16_round", "kernels", "linear", "linear_u8s8", "matmul_u8s8", "minmax_observer_qparams",
           "moving_average_minmax", "observer_output", "per_channel_minmax_qparams", "quantize", "reference_model", "reference_output",
           "requantize_float", "requantize_q31", "rowwise_quantize", "rowwise_table"]
