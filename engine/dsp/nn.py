"""Numba neural-network cells shared by the live models: sigmoid, DDSP's exp_sigmoid, GRU and LSTM steps.

All scalar functions specialise on their argument type (float32 in, float32
math), are inlined into their callers and allocate nothing. Torch twins are in
the models (``torch.nn.GRU``, ``torch.nn.LSTM``; :func:`cadenza.models.ddsp_torch.exp_sigmoid`).
"""

from __future__ import annotations

import math

from numba import njit

LN10 = 2.302585092994046  # math.log(10.0), DDSP's exponent


@njit(nogil=True, cache=True, inline="always")
def sigmoid(x):
    """1 / (1 + e^-x)."""
    return 1.0 / (1.0 + math.exp(-x))


@njit(nogil=True, cache=True, inline="always")
def exp_sigmoid(x):
    """DDSP's positive, bounded non-linearity: 2 · sigmoid(x)^ln10 + 1e-7."""
    return 2.0 * sigmoid(x) ** LN10 + 1e-7


@njit(nogil=True, cache=True, inline="always")
def gru_cell(gi, gh, h):
    """Update ``h`` (hidden,) in place from the input and hidden projections ``gi``, ``gh`` (3·hidden,),
    torch's gate order (r, z, n) with biases included: n = tanh(gi_n + r·gh_n), h = (1 − z)·n + z·h."""
    n = h.shape[0]
    for k in range(n):
        r = sigmoid(gi[k] + gh[k])
        z = sigmoid(gi[n + k] + gh[n + k])
        c = math.tanh(gi[2 * n + k] + r * gh[2 * n + k])
        h[k] = (1.0 - z) * c + z * h[k]


@njit(nogil=True, cache=True, inline="always")
def gru_layer(x, h, w_ih, b_ih, w_hh, b_hh, gi, gh):
    """One GRU step from input ``x``: projections ``gi = b_ih + w_ih·x`` and ``gh = b_hh + w_hh·h``
    (3·hidden,) into the scratch given, then :func:`gru_cell` updates ``h`` (hidden,) in place."""
    n_h = h.shape[0]
    for g in range(3 * n_h):
        acc = b_ih[g]
        for k in range(x.shape[0]):
            acc += w_ih[g, k] * x[k]
        gi[g] = acc
        acc = b_hh[g]
        for k in range(n_h):
            acc += w_hh[g, k] * h[k]
        gh[g] = acc
    gru_cell(gi, gh, h)


@njit(nogil=True, cache=True, inline="always")
def lstm_cell(gates, h, c):
    """Update ``h``, ``c`` (hidden,) in place from the gate pre-activations ``gates`` (4·hidden,),
    torch's order (i, f, g, o) with biases included: c = f·c + i·g, h = o·tanh(c)."""
    n = h.shape[0]
    for j in range(n):
        i = sigmoid(gates[j])
        f = sigmoid(gates[n + j])
        g = math.tanh(gates[2 * n + j])
        o = sigmoid(gates[3 * n + j])
        c[j] = f * c[j] + i * g
        h[j] = o * math.tanh(c[j])


@njit(nogil=True, cache=True, fastmath=True)
def lstm2_step(x_gates, whh1, wih2, whh2, b2, wout, bout, h, c, gates, logits):
    """One step of a 2-layer LSTM and its linear read-out (torch's ``nn.LSTM`` + ``nn.Linear``).

    ``x_gates`` (4·hidden,): the first layer's input projection with both its
    biases, which the caller builds from its own inputs; ``h``, ``c`` (2, hidden)
    advance in place; ``gates`` (4·hidden,) is scratch; ``logits`` gets the read-out.
    ``fastmath`` lets LLVM vectorise the dot products (it reorders float64 sums: ~1e-15 relative).
    """
    hidden = h.shape[1]
    for r in range(4 * hidden):
        acc = x_gates[r]
        for j in range(hidden):
            acc += whh1[r, j] * h[0, j]
        gates[r] = acc
    lstm_cell(gates, h[0], c[0])
    for r in range(4 * hidden):
        acc = b2[r]
        for j in range(hidden):
            acc += wih2[r, j] * h[0, j] + whh2[r, j] * h[1, j]
        gates[r] = acc
    lstm_cell(gates, h[1], c[1])
    for k in range(logits.shape[0]):
        acc = bout[k]
        for j in range(hidden):
            acc += wout[k, j] * h[1, j]
        logits[k] = acc
