"""Softmax + cross-entropy, fused: the output of every model, and the only loss it needs.

For logits z, labels y and batch size B:
    L = -(1/B) Σ_n log softmax(z_n)[y_n]        (natural log, mean over the batch)
    dL/dz = (softmax(z) - onehot(y)) / B
Fusing the two keeps the gradient exact and stable even when softmax saturates.
"""

from __future__ import annotations

import numpy as np


class SoftmaxCrossEntropy:
    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """Mean cross-entropy of the batch; remembers the probabilities for `backward`.

        With s = z - max(z): log softmax(z)[y] = s[y] - log Σ e^s, and Σ e^s >= 1 never underflows.
        """
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        self._rows = np.arange(len(labels))
        log_likelihood_sum = shifted[self._rows, labels].sum() - np.log(total).sum()
        exp /= total
        self.probabilities = exp
        self._labels = labels
        return float(-log_likelihood_sum / len(labels))

    def backward(self) -> np.ndarray:
        grad = self.probabilities.copy()
        grad[self._rows, self._labels] -= 1
        grad *= grad.dtype.type(1.0 / len(self._labels))
        return grad
