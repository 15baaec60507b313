"""One continuation-net event step in numba: the sampler's path on a CPU (the worker lane's jobs).

One step of ``ContinuationNet.forward`` ported weight for weight. The token's and the beat
position's embeddings are pushed through the first layer's input weights once,
at load (``token_table[k] = W_ih1 · embed[k] + b_ih1 + b_hh1``, ``position_table``
likewise without biases); a step adds two rows and runs
:func:`cadenza.engine.dsp.nn.lstm2_step`. Float64, preallocated, and the GIL
is released while it runs, so a lane job stepping the net never holds up the
Python of the audio thread (torch's eager step holds it for ~0.4 ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cadenza.engine.dsp.nn import lstm2_step
from cadenza.models.continuation.model import ContinuationNet


@njit(nogil=True, cache=True)
def event_steps(token_table, position_table, whh1, wih2, whh2, b2, wout, bout,
                h, c, gates, x_gates, tokens, positions, logits):
    """Feed ``tokens`` at beat ``positions`` (int64 arrays) one by one; ``logits`` (VOCAB,) after the last."""
    for t in range(tokens.shape[0]):
        for r in range(x_gates.shape[0]):
            x_gates[r] = token_table[tokens[t], r] + position_table[positions[t], r]
        lstm2_step(x_gates, whh1, wih2, whh2, b2, wout, bout, h, c, gates, logits)


class NumbaStepper:
    """The net's weights as float64 arrays plus its state: ``reset``, ``feed``."""

    def __init__(self, model: ContinuationNet):
        if model.config.layers != 2:
            raise ValueError(f"the numba step runs 2-layer nets, not {model.config.layers}")
        sd = {k: v.detach().double().cpu().numpy() for k, v in model.state_dict().items()}
        wih1 = sd["lstm.weight_ih_l0"]
        self.token_table = np.ascontiguousarray(sd["embed.weight"] @ wih1.T + sd["lstm.bias_ih_l0"]
                                                + sd["lstm.bias_hh_l0"])
        self.position_table = np.ascontiguousarray(sd["position.weight"] @ wih1.T)
        self.whh1 = np.ascontiguousarray(sd["lstm.weight_hh_l0"])
        self.wih2 = np.ascontiguousarray(sd["lstm.weight_ih_l1"])
        self.whh2 = np.ascontiguousarray(sd["lstm.weight_hh_l1"])
        self.b2 = sd["lstm.bias_ih_l1"] + sd["lstm.bias_hh_l1"]
        self.wout = np.ascontiguousarray(sd["out.weight"])
        self.bout = sd["out.bias"]
        hidden = self.whh1.shape[1]
        self.h = np.zeros((2, hidden))
        self.c = np.zeros((2, hidden))
        self.gates = np.zeros(4 * hidden)
        self.x_gates = np.zeros(4 * hidden)
        self.logits = np.zeros(self.bout.shape[0])

    def reset(self) -> None:
        """Nothing heard: zero state."""
        self.h[:] = 0.0
        self.c[:] = 0.0

    def feed(self, tokens: list[int], positions: list[int]) -> np.ndarray:
        """Run the net over ``tokens`` at ``positions``; the logits (VOCAB,) after the last (a view, reused)."""
        event_steps(self.token_table, self.position_table, self.whh1, self.wih2, self.whh2, self.b2,
                    self.wout, self.bout, self.h, self.c, self.gates, self.x_gates,
                    np.asarray(tokens, np.int64), np.asarray(positions, np.int64), self.logits)
        return self.logits
