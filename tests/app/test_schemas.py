"""Answers cannot drift from their schemas: every JSON route declares its answer model, the
models refuse fields they do not declare, and FastAPI checks each answer against its model, so a
drifted answer is an error, never sent. No MNIST: the runs here are records in a real store."""

from __future__ import annotations

import pytest
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app import schemas
from app.main import create_app
from app.runs.presenter import RunPresenter
from app.runs.service import RunService
from app.settings import Settings
from app.store import Store
from engine.config import TrainConfig
from engine.events import EPOCH_FIELDS

EPOCH = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.4,
         "val_accuracy": 0.9, "running_loss": 0.6, "running_accuracy": 0.7, "duration_s": 2.5,
         "learning_rate": 0.1}
NOT_JSON_MODELS = {"/predict",  # the hot path writes its JSON itself (app/predictor.py)
                   "/api/runs/{run_id}/model",  # a file
                   "/"}  # the page


@pytest.fixture
def client(tmp_path):
    """An app whose store already holds a completed run (id 1) with one epoch."""
    settings = Settings(data_dir=tmp_path)
    store = Store(settings.database_path)
    run = store.create_run(TrainConfig.from_dict({"epochs": 1}).to_dict(), "2030-01-01T00:00:00Z")
    store.add_epoch(run["id"], EPOCH)
    store.add_iterations(run["id"], [(0, 1, 2.3), (1, 1, 1.9)])
    store.update_run(run["id"], status="completed", started_at="2030-01-01T00:00:01Z",
                     finished_at="2030-01-01T00:00:09Z", duration_s=8.0, epoch=1, step=1,
                     steps_per_epoch=2, best_val_accuracy=0.9, test_accuracy=0.9)
    store.close()
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_epoch_schema_is_the_engines_epoch_event():
    assert tuple(schemas.Epoch.model_fields) == EPOCH_FIELDS
    with pytest.raises(ValidationError):
        schemas.Epoch(**EPOCH, surprise=1)


def test_every_json_route_declares_its_answer_model(client):
    for route in client.app.routes:
        if not isinstance(route, APIRoute) or route.path in NOT_JSON_MODELS:
            continue
        if route.methods == {"DELETE"} or not route.include_in_schema:  # pages (/docs) are HTML
            continue
        assert route.response_model is not None, route.path


def test_answers_match_their_schemas(client):
    run = schemas.Run.model_validate(client.get("/api/runs/1").json())
    assert run.status == "completed" and [e.model_dump() for e in run.epochs] == [EPOCH]
    listed = schemas.RunList.model_validate(client.get("/api/runs").json())
    assert "epochs" not in client.get("/api/runs").json()["runs"][0]
    assert listed.runs[0].progress.step == 2
    metrics = schemas.Metrics.model_validate(client.get("/api/runs/1/metrics").json())
    assert [point.step for point in metrics.iterations] == [0, 1]
    csv = client.get("/api/runs/1/metrics?format=csv").text.splitlines()
    assert csv[0] == ",".join(["step", "epoch", "loss", *EPOCH_FIELDS[1:]])
    assert csv[2].split(",")[3:] == [str(EPOCH[name]) for name in EPOCH_FIELDS[1:]]
    schemas.Options.model_validate(client.get("/api/options").json())
    schemas.ActiveModel.model_validate(client.get("/api/active-model").json())
    schemas.Health.model_validate(client.get("/healthz").json())


def test_an_answer_that_drifts_from_its_schema_is_an_error_not_sent(client, monkeypatch):
    summary = RunPresenter.summary

    def wrong_value(self, *args, **kwargs):  # built without validation, as a bug might
        return schemas.RunSummary.model_construct(**{**dict(summary(self, *args, **kwargs)),
                                                     "status": "exploded"})

    monkeypatch.setattr(RunPresenter, "summary", wrong_value)
    with pytest.raises((ResponseValidationError, ValidationError)):
        client.get("/api/runs")
    monkeypatch.undo()

    get = RunService.get

    def extra_field(self, run_id):  # an answer with a field the schema does not declare
        return {**get(self, run_id).model_dump(), "surprise": 1}

    monkeypatch.setattr(RunService, "get", extra_field)
    with pytest.raises(ResponseValidationError):
        client.get("/api/runs/1")


def test_no_model_yet_is_one_status_everywhere(client, tmp_path):
    """Run 1 completed without a model file: every route that needs its model says 409."""
    for method, path in (("GET", "/api/runs/1/model"), ("GET", "/api/runs/1/evaluation"),
                         ("GET", "/api/runs/1/weights"), ("PUT", "/api/active-model")):
        body = {"run_id": 1} if method == "PUT" else None
        response = client.request(method, path, json=body)
        assert response.status_code == 409, (path, response.text)
        assert "no model yet" in response.json()["detail"]
    answer = client.post("/predict", json={"pixels": [0.0] * 784})
    assert answer.status_code == 409 and "no trained model yet" in answer.json()["detail"]
    answer = client.post("/predict", json={"pixels": [0.0] * 784, "run_id": 1})
    assert answer.status_code == 409 and "no model yet" in answer.json()["detail"]
