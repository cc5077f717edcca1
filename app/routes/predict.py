"""POST /predict: pixels, a picture (data URL / base64), or an uploaded file → a digit."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app import schemas
from app.predictor import CorruptModel, InputError, PredictionService, decode_base64_image
from app.runs.service import RunService
from app.store import SQLITE_INTEGER_MAX
from engine.config import shown

router = APIRouter()


@router.post("/predict", response_model=schemas.Prediction | schemas.BatchPrediction, tags=["predict"],
             openapi_extra={"requestBody": schemas.PREDICT_BODY},
             responses={409: {"model": schemas.Error}, 413: {"model": schemas.Error},
                        422: {"model": schemas.Error}})
async def predict(request: Request):
    """Predict with a run's model (`run_id`) or the active model. During training the run's
    latest epoch is used. Send JSON `{"pixels": [...]}` or `{"image": "data:image/png;base64,..."}`,
    or a multipart upload with the field `file`."""
    # The services come straight from app.state: dependency injection is measurable at 500 req/s.
    runs: RunService = request.app.state.runs
    service: PredictionService = request.app.state.predictions
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data, run_id = await _read_upload(request)
        return await _answer(runs, run_id, service.from_image, data, limiter=service.decode_slots)
    body = await request.body()
    payload = _parse_json(body)
    run_id = _run_id(payload.get("run_id"))
    if "pixels" in payload and "image" in payload:
        raise InputError("send either pixels or image, not both")
    if "pixels" in payload:
        pixels = payload["pixels"]
        # One image with a small, loaded model is ~0.2 ms of NumPy: cheaper on the loop than a hop
        # to the threadpool (which costs more than that on a busy machine). Everything else (a
        # batch, a picture, a big model, a model to load from disk) goes to the threadpool.
        single = isinstance(pixels, list) and not (pixels and isinstance(pixels[0], list))
        return await _answer(runs, run_id, service.from_pixels, pixels,
                             quick=service.quick if single else None)
    if "image" in payload:
        return await _answer(runs, run_id, service.from_image, decode_base64_image(payload["image"]),
                             limiter=service.decode_slots)
    raise InputError('send {"pixels": [784 numbers in 0..1]}, {"image": "<data URL>"} or a '
                     "multipart upload with the field `file`")


async def _answer(runs: RunService, run_id: int | None, predict, value: Any, quick=None,
                  limiter: anyio.CapacityLimiter | None = None):
    chosen = runs.model_for(run_id)  # 404 for an unknown run, 409 while there is no model
    try:
        if quick is not None and quick(chosen):
            answer = predict(chosen, value)
        elif limiter is not None:  # pictures: a few decodes at a time (memory), the rest wait here
            answer = await anyio.to_thread.run_sync(predict, chosen, value, limiter=limiter)
        else:
            answer = await run_in_threadpool(predict, chosen, value)
    except CorruptModel as error:
        raise (error.as_active() if run_id is None else error) from None
    return Response(answer, media_type="application/json")


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise InputError('the request body is empty; send {"pixels": [...]} or {"image": "..."}')
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InputError(f"the request body is not valid JSON ({error}); send a JSON object "
                         'like {"pixels": [...]}') from None
    if not isinstance(payload, dict):
        raise InputError(f'the request body must be a JSON object like {{"pixels": [...]}}, '
                         f"got {type(payload).__name__}")
    unknown = sorted(set(payload) - {"pixels", "image", "run_id"})
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(map(shown, unknown))}; known: pixels, image, "
                         "run_id")
    return payload


def _run_id(value: Any) -> int | None:
    """A JSON `run_id`: a number, never `true` or `"3"`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SQLITE_INTEGER_MAX:
        raise InputError(f"run_id must be a run's id (a positive whole number), got {shown(value)}")
    return value


def _form_run_id(text: str) -> int | None:
    """A multipart `run_id` field: text, so digits are read as a number."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise InputError(f"run_id must be a run's id (a positive whole number), got {shown(text)}")
    return _run_id(int(text))


async def _read_upload(request: Request) -> tuple[bytes, int | None]:
    settings = request.app.state.settings
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=settings.max_body_bytes)
    except Exception as error:  # noqa: BLE001 - malformed multipart → 422, not 500
        if type(error).__name__ == "BodyTooLarge":
            raise
        raise InputError(f"the multipart upload cannot be read ({error}); send the image in a "
                         "field named `file`") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError("a multipart upload needs the image in a file field named `file`")
        data = await upload.read()
        run_id = form.get("run_id")
        return data, _form_run_id(run_id if isinstance(run_id, str) else "")
    finally:
        await form.close()
