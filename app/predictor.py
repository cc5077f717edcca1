"""Predictions: turn what a client sent (pixels or a picture) into the model's 28x28 input, then
into probabilities, with the saved model of a run (cached until its file changes).

Everything here is synchronous NumPy/Pillow work: the routes call it in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from PIL import Image, UnidentifiedImageError

from app import memory
from engine.config import shown
from engine.model import ModelError, Sequential, load_model

N_PIXELS = 28 * 28
INLINE_MAX_PARAMETERS = 1_000_000  # about 0.1 ms of matrix products per image
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Larger pictures are shrunk to at most this many pixels a side first: the digit ends up 20 px
# anyway, and preprocessing works in float64 (a 1024-px RGBA picture would take ~100 MB there).
WORKING_SIDE = 512
REDUCIBLE_MODES = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F")
RELEASE_ABOVE_PIXELS = 1 << 20  # after decoding more than this, freed memory goes back to the OS
EXIF_ORIENTATION = 0x0112
EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                  6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                  8: Image.Transpose.ROTATE_90}
_DATA_URL = re.compile(r"^data:([\w/+.-]*)(;[\w=.+-]+)*;base64,", re.IGNORECASE)


class InputError(ValueError):
    """Input that cannot be predicted on (HTTP 422); the message says what to send instead."""


class CorruptModel(Exception):
    """A run's model file exists but cannot be read (HTTP 409): truncated, damaged, not a model."""

    def __init__(self, run_id: int, reason: str, active: bool = False):
        self.run_id, self.reason = run_id, reason
        whose = f"the active model (run {run_id}), which /predict uses by default," if active else \
            f"the model file of run {run_id}"
        choose = ("choose another run's model with PUT /api/active-model (Use for predictions in "
                  "the Runs list) or send a run_id, " if active else "")
        super().__init__(
            f"{whose} is damaged and cannot be read ({reason}). Nothing else is affected: "
            f"{choose}delete run {run_id} (DELETE /api/runs/{run_id}) or train it again")

    def as_active(self) -> CorruptModel:
        return CorruptModel(self.run_id, self.reason, active=True)


class ModelCache:
    """Loaded models by run id, reloaded when the file's mtime or size changes (a new epoch).
    A file that cannot be read is remembered too (by its version), so a damaged file is read
    once, not on every request, and answers CorruptModel until it changes."""

    def __init__(self, model_path):
        self._model_path = model_path
        self._models: dict[int, tuple[tuple[int, int], Sequential, dict[str, Any]]] = {}
        self._broken: dict[int, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def cached(self, run_id: int) -> Sequential | None:
        """The loaded model if it is current, without ever reading the file (cheap: one stat)."""
        entry = self._models.get(run_id)
        if entry is None:
            return None
        try:
            stat = self._model_path(run_id).stat()
        except OSError:
            return None
        return entry[1] if entry[0] == (stat.st_mtime_ns, stat.st_size) else None

    def get(self, run_id: int) -> tuple[Sequential, dict[str, Any]] | None:
        """The run's model and metadata; None if it has no file; CorruptModel if it has a file
        that cannot be read."""
        path: Path = self._model_path(run_id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._models.pop(run_id, None)
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._models.get(run_id)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        with self._lock:
            cached = self._models.get(run_id)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            broken = self._broken.get(run_id)
            if broken is not None and broken[0] == version:
                raise CorruptModel(run_id, broken[1])
            try:
                model, metadata = load_model(path)
            except ModelError as error:
                if isinstance(error.__cause__, FileNotFoundError):  # deleted meanwhile
                    return None
                self._models.pop(run_id, None)
                self._broken[run_id] = (version, str(error))
                raise CorruptModel(run_id, str(error)) from None
            self._broken.pop(run_id, None)
            self._models[run_id] = (version, model, metadata)
            return model, metadata

    def forget(self, run_id: int) -> None:
        self._models.pop(run_id, None)
        self._broken.pop(run_id, None)


def probabilities(model: Sequential, inputs: np.ndarray) -> np.ndarray:
    return model.predict_proba(inputs).astype(np.float64)


# --- pixels ------------------------------------------------------------------------------------------
_NUMBER_TYPES = frozenset((float, int))


def parse_pixels(value: Any, max_batch: int) -> tuple[np.ndarray, bool]:
    """`{"pixels": ...}` → ((N, 784) float32 in 0..1, whether it was a batch)."""
    if not isinstance(value, list) or not value:
        raise InputError(
            f"pixels must be a list of {N_PIXELS} numbers in 0..1 (a 28x28 image, row-major, "
            f"white ink on black) or a list of such lists; got {_kind(value)}"
        )
    batch = isinstance(value[0], list)
    rows = value if batch else [value]
    if batch and len(rows) > max_batch:
        raise InputError(f"a batch may hold at most {max_batch} images, got {len(rows)}; "
                         "split it into smaller requests")
    for index, row in enumerate(rows):
        where = f"pixels[{index}]" if batch else "pixels"
        if not isinstance(row, list):
            raise InputError(f"{where} must be a list of {N_PIXELS} numbers, got {_kind(row)}")
        if len(row) != N_PIXELS:
            raise InputError(f"{where} has {len(row)} values; expected {N_PIXELS} "
                             "(28x28, row-major)")
        if not set(map(type, row)) <= _NUMBER_TYPES:  # bool is not a number here
            bad = next(item for item in row if type(item) not in _NUMBER_TYPES)
            raise InputError(f"{where} must hold only numbers in 0..1, found {shown(bad)}")
    try:
        array = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise InputError("pixels contain a number too large to represent; values must be in 0..1") from None
    if not np.isfinite(array).all():
        raise InputError("pixels contain NaN or infinity; every value must be a number in 0..1")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        hint = " (it looks like 0..255: divide by 255)" if high > 1.0 and high <= 255 else ""
        raise InputError(f"pixel values must be in 0..1, got values from {low:g} to {high:g}{hint}")
    blank = np.flatnonzero(array.max(axis=1) == 0.0)
    if blank.size:  # the same 422 as a picture with nothing on it
        where = f"pixels[{blank[0]}]" if batch else "pixels"
        raise InputError(f"nothing is drawn: every value of {where} is 0; draw a digit (white ink, "
                         "values up to 1, on black) and try again")
    return array.astype(np.float32), batch


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None:
        return "null"
    return type(value).__name__


# --- pictures -------------------------------------------------------------------------------------
def decode_base64_image(text: Any) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise InputError('image must be a data URL ("data:image/png;base64,...") or the base64 '
                         f"of a PNG or JPEG file; got {_kind(text)}")
    text = text.strip()
    match = _DATA_URL.match(text)
    if match:
        text = text[match.end():]
    elif text.startswith("data:"):
        raise InputError("image is a data URL without base64 data; send "
                         '"data:image/png;base64,<data>" (canvas.toDataURL() makes one)')
    text = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image is not valid base64; send a data URL from canvas.toDataURL() "
                         "or the base64 of a PNG or JPEG file") from None


def decode_image(data: bytes, max_side: int, max_pixels: int) -> np.ndarray:
    """PNG/JPEG/... bytes → (H, W) grey or (H, W, 4) RGBA uint8, at most WORKING_SIDE a side.

    Memory is bounded before a single pixel is decoded: the header's size must be within
    `max_side`; a JPEG is decoded straight to grey at 1/2, 1/4 or 1/8 scale by its own decoder
    (`draft`) when it is larger than needed; what is then decoded must be at most `max_pixels`
    (4 bytes each at most). It is shrunk by whole factors (`reduce`, a box filter) before any
    conversion, so only one full-size copy ever exists."""
    if not data:
        raise InputError("the image is empty (0 bytes); send a PNG or JPEG file")
    large = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            if width < 1 or height < 1:
                raise InputError(f"the image is {width}x{height} pixels: empty")
            if max(width, height) > max_side:
                raise InputError(f"the image is {width}x{height} pixels; at most {max_side} pixels "
                                 "a side are accepted: scale it down and try again")
            has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                image.mode in ("P", "L", "RGB") and "transparency" in image.info)
            if image.format == "JPEG":  # no alpha; the decoder scales by 1/2..1/8 for free
                image.draft("L", (WORKING_SIDE, WORKING_SIDE))
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    f"the image is {width}x{height} pixels; at most {max_pixels:,} pixels in all are "
                    "decoded (a digit needs a few hundred pixels a side): scale it down and try again")
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            large = width * height > RELEASE_ABOVE_PIXELS
            image.load()
            if image.mode not in REDUCIBLE_MODES or "transparency" in image.info:
                image = image.convert("RGBA" if has_alpha else "L")  # palette, 1-bit, 16-bit
            factor = math.ceil(max(image.size) / WORKING_SIDE)
            if factor > 1:
                image = image.reduce(factor)
            image = image.convert("RGBA" if has_alpha else "L")
            if orientation in EXIF_TRANSPOSE:
                image = image.transpose(EXIF_TRANSPOSE[orientation])
            return np.array(image)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError("the image declares too many pixels to decode safely; scale it down") from None
    except UnidentifiedImageError:
        raise InputError("the image cannot be decoded: the data is not a "
                         f"{', '.join(IMAGE_FORMATS)} file; send a PNG or JPEG file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(
            f"the image cannot be decoded ({shown(str(error), 120)[1:-1]}); send a PNG or JPEG file "
            f"({', '.join(IMAGE_FORMATS)} are accepted)"
        ) from None
    finally:
        if large:
            image = None
            memory.release()  # the full-size copy is gone: give its pages back


def image_to_input(data: bytes, max_side: int, max_pixels: int) -> np.ndarray:
    """A picture of a digit → the (784,) float32 MNIST-style input the model sees."""
    from engine.preprocess import EmptyImageError, to_mnist

    pixels = decode_image(data, max_side, max_pixels)
    try:
        return to_mnist(pixels)
    except EmptyImageError as error:
        raise InputError(f"nothing is drawn: {error}") from None


# --- answers ---------------------------------------------------------------------------------------
def prediction(probs: np.ndarray, run_id: int) -> dict[str, Any]:
    return {"digit": int(probs.argmax()), "probabilities": [_finite(p) for p in probs.tolist()],
            "run_id": run_id}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


# The 784 input values are sent back rounded to 4 decimals. Formatting floats one by one is the
# most expensive part of a prediction, so every possible value is formatted once, padded to a
# fixed width with spaces, and an answer is one gather of those bytes, the padding then removed.
_INPUT_WIDTH = 7  # "0.1234," and "     0,"
_INPUT_TEXT = np.array(
    [np.frombuffer(f"{format(i / 10000, '.4g'):>{_INPUT_WIDTH - 1}},".encode(), np.uint8)
     for i in range(10001)])


def prediction_json(probs: np.ndarray, run_id: int, inputs: np.ndarray) -> str:
    """The JSON answer for one image, `input` included (docs/API.md, Prediction)."""
    steps = np.rint(np.clip(inputs, 0.0, 1.0) * 10000).astype(np.intp)
    values = _INPUT_TEXT[steps].tobytes()[:-1].replace(b" ", b"").decode("ascii")
    head = json.dumps(prediction(probs, run_id), allow_nan=False, separators=(",", ":"))
    return f'{head[:-1]},"input":[{values}]}}'


class PredictionService:
    """What /predict does once the model is chosen: runs in a worker thread. Pictures are decoded
    in at most `max_concurrent_decodes` threads at once (`decode_slots`), the others wait their
    turn, so a flood of uploads holds at most that many decoded pictures."""

    def __init__(self, models: ModelCache, max_batch: int, max_image_side: int, max_image_pixels: int,
                 max_concurrent_decodes: int = 2):
        self.models = models
        self.max_batch = max_batch
        self.max_image_side = max_image_side
        self.max_image_pixels = max_image_pixels
        self.decode_slots = anyio.CapacityLimiter(max_concurrent_decodes)

    def from_pixels(self, run_id: int, value: Any) -> str:
        """The JSON answer for `{"pixels": ...}` (one image or a batch)."""
        inputs, batch = parse_pixels(value, self.max_batch)
        probs = probabilities(self._model(run_id), inputs)
        if batch:
            return json.dumps({"predictions": [prediction(p, run_id) for p in probs],
                               "run_id": run_id}, allow_nan=False, separators=(",", ":"))
        return prediction_json(probs[0], run_id, inputs[0])

    def quick(self, run_id: int) -> bool:
        """Whether one image can be answered on the event loop: its model is loaded and current
        (no file to read) and small enough that a forward pass takes well under a millisecond,
        less than the hop to the threadpool costs."""
        model = self.models.cached(run_id)
        return model is not None and model.parameter_count() <= INLINE_MAX_PARAMETERS

    def from_image(self, run_id: int, data: bytes) -> str:
        """The JSON answer for a picture (PNG/JPEG/... bytes)."""
        inputs = image_to_input(data, self.max_image_side, self.max_image_pixels)
        probs = probabilities(self._model(run_id), inputs[None, :])
        return prediction_json(probs[0], run_id, inputs)

    def _model(self, run_id: int) -> Sequential:
        loaded = self.models.get(run_id)
        if loaded is None:
            raise NoModel(f"run {run_id} has no saved model (it may have just been deleted); "
                          "pick another run or train one")
        return loaded[0]


class NoModel(LookupError):
    """There is no model to predict with (HTTP 409)."""
