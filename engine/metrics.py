"""Evaluation of a model on a labelled set: loss, accuracy, confusion matrix, per-class accuracy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine.digits import N_CLASSES
from engine.model import Sequential


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    predictions: np.ndarray  # (N,) predicted digit
    confidence: np.ndarray  # (N,) probability of the predicted digit

    def confusion_matrix(self, labels: np.ndarray) -> np.ndarray:
        return confusion_matrix(labels, self.predictions)


def normalise(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 pixels 0..255 → floats 0..1, one batch at a time (the dataset stays uint8)."""
    x = images.astype(dtype)
    x *= x.dtype.type(1.0 / 255.0)
    return x


EVALUATION_BATCH = 2000  # digits per forward pass: bounds the memory an evaluation needs


def evaluate(model: Sequential, images: np.ndarray, labels: np.ndarray,
             batch_size: int = EVALUATION_BATCH, threads: int = 1) -> Evaluation:
    """Mean cross-entropy (natural log) and accuracy over every sample, last partial batch included.

    With `threads` > 1 the batches are shared out among that many threads (NumPy's products run
    in parallel, outside the GIL); the result is the same, bit for bit.
    """
    n = len(labels)
    predictions = np.empty(n, dtype=np.int64)
    confidence = np.empty(n, dtype=np.float32)

    def batch_loss(start: int) -> float:
        """Fills the batch's predictions and confidences; returns its summed cross-entropy."""
        x = images[start : start + batch_size]
        if x.dtype == np.uint8:
            x = normalise(x, model.dtype)
        y = labels[start : start + batch_size].astype(np.int64)
        p = model.predict_proba(x)
        picked = p[np.arange(len(y)), y]
        predictions[start : start + len(y)] = p.argmax(axis=1)
        confidence[start : start + len(y)] = p.max(axis=1)
        return float(np.log(np.maximum(picked, 1e-12)).sum())

    starts = range(0, n, batch_size)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(threads, len(starts))) as pool:
            losses = list(pool.map(batch_loss, starts))
    else:
        losses = [batch_loss(start) for start in starts]
    total_loss = 0.0
    for loss in losses:  # summed in batch order, whichever thread computed each
        total_loss -= loss
    accuracy = float(np.mean(predictions == labels)) if n else 0.0
    return Evaluation(total_loss / max(n, 1), accuracy, predictions, confidence)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts C[t, p] of samples with true class t predicted as p."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), totals, out=np.zeros(len(matrix)), where=totals > 0)
