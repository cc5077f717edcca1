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
        """Mean cross-entropy of the batch; remembers the probabilities for `backward`."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(labels))
        log_likelihood = shifted[rows, labels] - np.log(total[:, 0])
        exp /= total
        self.probabilities = exp
        self._labels = labels
        return float(-log_likelihood.mean())

    def backward(self) -> np.ndarray:
        grad = self.probabilities.copy()
        grad[np.arange(len(self._labels)), self._labels] -= 1
        grad /= len(self._labels)
        return grad
