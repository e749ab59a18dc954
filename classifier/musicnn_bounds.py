"""Which of MSD_musicnn's front-end filters can never fire: proved, not sampled.

Most of the front end's filters are dead: on every input genred can give them, their
convolution is at most 0, so after the ReLU they output 0 and the block outputs the
BatchNorm's shift, a constant (164 of 204 filters of the 7 x 38 timbral block, 183 of 204
of the 7 x 67 one, 51 of the 153 temporal ones). Their weights decayed to almost nothing
around a negative bias during training. Computing them is ~75 % of a patch's
multiply-adds, for a result known in advance; classifier/musicnn_ort.py leaves them out
and puts their constant in their place.

The proof, per filter, is interval arithmetic on the filter's own weights:

- the network's input is ``log10(1 + 10000 * mel power)``: at least 0, and below 42.6 for
  any finite float32 power, so every input value lies in ``[0, LOGMEL_BOUND]``;
- the input BatchNorm maps that interval to ``[lo, hi]`` (with 0 in it: the padding);
- a convolution output is ``bias + sum(w_i * u_i)`` with every ``u_i`` in ``[lo, hi]``, so
  it is at most ``bias + sum(max(w_i * lo, w_i * hi))``;
- float32 arithmetic can add at most ``gamma_n * (|bias| + sum(|w_i|) * max(|lo|, |hi|))``
  (n = the kernel's size + 1, in any summation order, fused or not), plus n times the
  smallest normal float should subnormal products be flushed to zero, and the input
  BatchNorm's own rounding is covered by widening ``[lo, hi]``.

A filter is left out only when that upper bound is below 0. Such a filter's computed
convolution is <= 0 everywhere, for both signs of its BatchNorm scale (the engine's min
over frequency of a negatively scaled channel is then <= 0 too), so the channel's output is
exactly its shift: the pruned engine gives the same embedding as the full one for every
patch inside the bound, which the engine checks before each call (a patch outside it —
NaN, negative, huge — runs on the full graph). tests/classifier/test_musicnn_bounds.py
checks the proof against patches built to push each pruned filter as high as it can go.
"""

from __future__ import annotations

import numpy as np

# log10(1 + 1e4 * float32 max) = 42.53: no finite float32 mel power gives more.
LOGMEL_BOUND = 64.0
_U = 2.0 ** -24  # float32 unit roundoff


def input_interval(in_scale: float, in_shift: float, bound: float = LOGMEL_BOUND
                   ) -> tuple[float, float]:
    """[lo, hi] of the input BatchNorm's output for inputs in [0, bound], zero (the
    convolutions' padding) included, widened by that affine map's float32 rounding."""
    ends = (in_shift, in_scale * bound + in_shift)
    slack = 4 * _U * (abs(in_scale) * bound + abs(in_shift))
    return min(*ends, 0.0) - slack, max(*ends, 0.0) + slack


def inactive_filters(weight: np.ndarray, bias: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Boolean mask over the filters of a one-input-channel convolution (``weight``:
    (C, 1, kh, kw)) whose float32 output is provably <= 0 for every input in [lo, hi]."""
    w = np.asarray(weight, np.float64).reshape(len(weight), -1)
    b = np.asarray(bias, np.float64)
    upper = b + np.maximum(w * lo, w * hi).sum(axis=1)
    n = w.shape[1] + 1
    gamma = n * _U / (1 - n * _U)
    rounding = gamma * (np.abs(b) + np.abs(w).sum(axis=1) * max(abs(lo), abs(hi)))
    rounding += n * np.finfo(np.float32).tiny  # products flushed to zero (FTZ/DAZ)
    return np.asarray(upper + rounding < 0)


def within_bound(patches: np.ndarray, bound: float = LOGMEL_BOUND) -> bool:
    """True when every value is in [0, bound] (False for NaN): the proof holds."""
    if patches.size == 0:
        return True
    return bool(patches.min() >= 0.0) and bool(patches.max() <= bound)
