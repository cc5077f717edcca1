"""What the dashboard shows about a trained model: its evaluation on the test set, the first
layer's weights as images, and which hidden units a digit makes fire. Computed from the saved
model file (evaluation and weights cached by its version)."""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

import numpy as np

from app import schemas
from app.predictor import InputError, ModelCache, NoModel
from engine.digits import N_INPUTS
from engine.inside import probe_forward, signed_bytes
from engine.metrics import confusion_matrix, evaluate, normalise, per_class_accuracy
from engine.model import Sequential

MAX_WEIGHT_IMAGES = 64  # per request: GET /api/runs/{id}/weights?offset= pages through the rest
MAX_MISCLASSIFIED_PAGE = 100


def misclassified_order(model: Sequential, images: np.ndarray, labels: np.ndarray,
                        predictions: np.ndarray, confidence: np.ndarray) -> dict[str, np.ndarray]:
    """Every misclassified test digit, most confident mistake first, with the model's second
    choice (the runner-up digit and its probability)."""
    wrong = np.flatnonzero(predictions != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    probabilities = model.predict_proba(normalise(images[order], model.dtype)) if len(order) \
        else np.zeros((0, 10))
    others = probabilities.copy()
    others[np.arange(len(order)), predictions[order]] = -1.0
    runner_up = others.argmax(axis=1)
    return {"index": order, "true": labels[order], "predicted": predictions[order],
            "confidence": confidence[order], "runner_up": runner_up,
            "runner_up_confidence": probabilities[np.arange(len(order)), runner_up]}


def misclassified_page(mistakes: dict[str, np.ndarray], images: np.ndarray, offset: int,
                       limit: int, true: int | None = None,
                       predicted: int | None = None) -> dict[str, Any]:
    """A page of `misclassified_order`, optionally only the digits `true` read as `predicted`."""
    keep = np.ones(len(mistakes["index"]), dtype=bool)
    if true is not None:
        keep &= mistakes["true"] == true
    if predicted is not None:
        keep &= mistakes["predicted"] == predicted
    rows = np.flatnonzero(keep)
    page = rows[offset : offset + limit]
    return {
        "total": int(len(rows)),
        "offset": offset,
        "items": [
            {"index": int(mistakes["index"][r]), "true": int(mistakes["true"][r]),
             "predicted": int(mistakes["predicted"][r]),
             "confidence": float(mistakes["confidence"][r]),
             "runner_up": int(mistakes["runner_up"][r]),
             "runner_up_confidence": float(mistakes["runner_up_confidence"][r]),
             "pixels": images[mistakes["index"][r]].tolist()}
            for r in page
        ],
    }


def evaluation(model: Sequential, images: np.ndarray, labels: np.ndarray,
               misclassified: int) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows = true digit), per-class accuracy, and the misclassified
    test digits the model was most confident about (all of them kept for paging)."""
    result = evaluate(model, images, labels)
    matrix = confusion_matrix(labels, result.predictions)
    mistakes = misclassified_order(model, images, labels, result.predictions, result.confidence)
    first = misclassified_page(mistakes, images, 0, misclassified)
    return {
        "accuracy": result.accuracy,
        "samples": int(len(labels)),
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": per_class_accuracy(matrix).tolist(),
        "misclassified": first["items"],
        "misclassified_total": first["total"],
        "_mistakes": mistakes,  # kept in the cache for GET .../misclassified, never sent
    }


def first_layer_images(model: Sequential, offset: int = 0,
                       limit: int = MAX_WEIGHT_IMAGES) -> dict[str, Any]:
    """The first Dense layer's incoming weights per unit, as 784 values in -1..1 (each unit
    scaled by its largest absolute weight): what each hidden unit looks for. Units
    `offset .. offset + limit` of `units`."""
    weights = model.dense_layers[0].W.value  # (784, units)
    units = weights.shape[1]
    shown = weights[:, offset : offset + limit].T.astype(np.float64)
    scale = np.abs(shown).max(axis=1, keepdims=True)
    shown = np.divide(shown, scale, out=np.zeros_like(shown), where=scale > 0)
    return {"units": int(units), "offset": offset, "images": np.round(shown, 4).tolist()}


def decode_pixels(text: str) -> np.ndarray:
    """784 grey values (0..255) from base64url (padding optional); InputError (422) otherwise."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InputError("pixels must be base64url: the 784 grey values of a digit, one byte "
                         "each (0..255, row-major)") from None
    if len(raw) != N_INPUTS:
        raise InputError(f"pixels must hold {N_INPUTS} bytes (28x28 grey values), got {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(1, N_INPUTS)


def hidden_units(model: Sequential, pixels: np.ndarray, top: int) -> dict[str, Any]:
    """The first hidden layer's units that respond most to `pixels` (uint8, (1, 784)): their
    activations after the activation function, strongest first, and their weights as images."""
    hidden = probe_forward(model, normalise(pixels, model.dtype))[0][0]
    weights = model.dense_layers[0].W.value
    strongest = np.argsort(-hidden, kind="stable")[:top]
    return {
        "units": int(len(hidden)),
        "active": int(np.count_nonzero(hidden > 0)),
        "top": [{"unit": int(unit), "activation": float(hidden[unit]),
                 "image": signed_bytes(weights[:, unit])} for unit in strongest],
    }


class Inspector:
    """Evaluations and weight images by run, recomputed only when the model file changes."""

    def __init__(self, models: ModelCache, load_test_set, misclassified: int):
        self.models = models
        self._load_test_set = load_test_set  # () -> (images uint8 (N, 784), labels (N,))
        self._test_set: tuple[np.ndarray, np.ndarray] | None = None
        self.misclassified = misclassified
        self._cache: dict[tuple[str, int], tuple[Sequential, Any]] = {}
        self._lock = threading.Lock()

    def evaluation(self, run_id: int) -> schemas.Evaluation:
        result = self._evaluation(run_id)
        return schemas.Evaluation(**{k: v for k, v in result.items() if k != "_mistakes"})

    def mistakes(self, run_id: int, offset: int, limit: int, true: int | None,
                 predicted: int | None) -> schemas.MisclassifiedPage:
        result = self._evaluation(run_id)
        return schemas.MisclassifiedPage(**misclassified_page(
            result["_mistakes"], self.test_set()[0], offset, limit, true, predicted))

    def _evaluation(self, run_id: int) -> dict[str, Any]:
        return self._cached("evaluation", run_id, lambda model: evaluation(
            model, *self.test_set(), self.misclassified))

    def weights(self, run_id: int, offset: int = 0,
                limit: int = MAX_WEIGHT_IMAGES) -> schemas.Weights:
        if offset == 0 and limit == MAX_WEIGHT_IMAGES:
            return self._cached("weights", run_id,
                                lambda model: schemas.Weights(**first_layer_images(model)))
        return schemas.Weights(**first_layer_images(self._model(run_id), offset, limit))

    def hidden_units(self, run_id: int, pixels: str, top: int) -> schemas.HiddenUnits:
        """Not cached: it depends on the digit."""
        digit = decode_pixels(pixels)
        model, metadata = self._loaded(run_id)
        return schemas.HiddenUnits(run_id=run_id, model_epoch=metadata.get("epoch"),
                                   **hidden_units(model, digit, top))

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._test_set is None:
                self._test_set = self._load_test_set()
            return self._test_set

    def _cached(self, kind: str, run_id: int, compute):
        """`compute(model)` for the run's model file as it is now (NoModel, 409, if it is
        missing or unreadable), cached until the file changes."""
        model = self._model(run_id)
        cached = self._cache.get((kind, run_id))
        if cached is not None and cached[0] is model:  # the same loaded file
            return cached[1]
        value = compute(model)
        self._cache[(kind, run_id)] = (model, value)
        return value

    def _model(self, run_id: int) -> Sequential:
        """The run's model as its file is now; NoModel (409) if it is missing or unreadable."""
        return self._loaded(run_id)[0]

    def _loaded(self, run_id: int) -> tuple[Sequential, dict[str, Any]]:
        """The run's model and its file's metadata; NoModel (409) as `_model`."""
        loaded = self.models.get(run_id)
        if loaded is None:
            raise NoModel(f"the model file of run {run_id} is missing or unreadable; start a new "
                          "run to train one again")
        return loaded

    def forget(self, run_id: int) -> None:
        for kind in ("evaluation", "weights"):
            self._cache.pop((kind, run_id), None)
