"""A run's name, tags and notes: PATCH /api/runs/{id}, validated strictly, shown wherever the run
is, announced to the run list's watchers and kept across a restart. No MNIST: the runs here are
records in a real store (a running run is renamed on a real server in test_server_e2e.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app import schemas
from app.contract import TAG_PATTERN_PUBLISHED
from app.main import create_app
from app.settings import Settings
from app.store import Store
from engine.config import TrainConfig
from tests.app.liveserver import strict_json

BASELINE = {"name": "baseline", "tags": ["small", "adam"], "notes": "the reference\nsecond line"}


def seeded(data_dir) -> Settings:
    """Settings for an app whose store holds two completed runs (ids 1 and 2)."""
    settings = Settings(data_dir=data_dir)
    store = Store(settings.database_path)
    for second in (0, 1):
        run = store.create_run(TrainConfig.from_dict({"epochs": 1}).to_dict(),
                               f"2030-01-01T00:00:0{second}Z")
        store.update_run(run["id"], status="completed")
    store.close()
    return settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return seeded(tmp_path)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def details(run: dict) -> dict:
    return {key: run[key] for key in ("name", "tags", "notes")}


def revision(client: TestClient) -> int:
    return client.get("/api/runs").json()["revision"]


def test_a_new_run_has_no_name_tags_or_notes(client):
    assert details(client.get("/api/runs/1").json()) == {"name": None, "tags": [], "notes": None}
    assert client.get("/api/runs/1").json()["diverged"] is None


def test_patch_sets_them_and_every_view_of_the_run_shows_them(client):
    answer = client.patch("/api/runs/1", json=BASELINE)
    assert answer.status_code == 200, answer.text
    assert details(answer.json()) == BASELINE
    schemas.Run.model_validate(answer.json())
    assert details(client.get("/api/runs/1").json()) == BASELINE
    listed = {run["id"]: run for run in client.get("/api/runs").json()["runs"]}
    assert details(listed[1]) == BASELINE
    assert details(listed[2]) == {"name": None, "tags": [], "notes": None}  # only the one named
    with client.websocket_connect("/ws/runs/1") as socket:  # an ended run's feed: its snapshot
        assert details(strict_json(socket.receive_text())["run"]) == BASELINE


def test_a_field_left_out_keeps_its_value_and_null_or_blank_clears_it(client):
    client.patch("/api/runs/1", json=BASELINE)
    assert details(client.patch("/api/runs/1", json={"notes": "only this"}).json()) == \
        {**BASELINE, "notes": "only this"}
    assert details(client.patch("/api/runs/1", json={"name": None, "tags": []}).json()) == \
        {"name": None, "tags": [], "notes": "only this"}
    assert client.patch("/api/runs/1", json={"notes": "  \n "}).json()["notes"] is None
    assert details(client.patch("/api/runs/1", json={}).json()) == \
        {"name": None, "tags": [], "notes": None}


def test_text_is_trimmed_and_a_repeated_tag_kept_once(client):
    answer = client.patch("/api/runs/1", json={"name": "  wide  ", "tags": [" a ", "b c", "a"],
                                               "notes": "  two\n\tlines  "}).json()
    assert details(answer) == {"name": "wide", "tags": ["a", "b c"], "notes": "two\n\tlines"}
    # Any script, and the punctuation of the rule.
    tags = ["lr=0.1", "été", "日本", "team/vision", "#42", "v1.2:rc+1", "user@host", "snake_case"]
    assert client.patch("/api/runs/1", json={"tags": tags}).json()["tags"] == tags


@pytest.mark.parametrize(("body", "words"), [
    ({"name": 42}, ["name", "string"]),
    ({"name": "x" * (schemas.NAME_MAX_LENGTH + 1)}, ["name", f"{schemas.NAME_MAX_LENGTH} characters"]),
    ({"name": "two\nlines"}, ["name", "U+000A", "one line"]),
    ({"notes": "x" * (schemas.NOTES_MAX_LENGTH + 1)}, ["notes", f"{schemas.NOTES_MAX_LENGTH}"]),
    ({"notes": "bell\a"}, ["notes", "U+0007"]),
    ({"notes": ["a list"]}, ["notes", "string"]),
    ({"tags": "small"}, ["tags", "list"]),
    ({"tags": None}, ["tags", "list"]),
    ({"tags": ["ok", 3]}, ["tags.1", "string"]),
    ({"tags": ["a,b"]}, ["tags.0", "'a,b' is not a tag", "letters, digits"]),
    ({"tags": [""]}, ["tags.0", "is not a tag"]),
    ({"tags": ["two  spaces"]}, ["tags.0", "is not a tag"]),
    ({"tags": ["<b>"]}, ["tags.0", "is not a tag"]),
    ({"tags": ["x" * (schemas.TAG_MAX_LENGTH + 1)]}, ["tags.0", "is not a tag"]),
    ({"tags": [f"t{i}" for i in range(schemas.TAGS_MAX_ITEMS + 1)]},
     ["tags", f"at most {schemas.TAGS_MAX_ITEMS} items"]),
    ({"name": "x", "colour": "red"}, ["colour is not a known field"]),
    ({"status": "completed"}, ["status is not a known field"]),
])
def test_bad_bodies_are_422_with_a_sentence_and_change_nothing(client, body, words):
    client.patch("/api/runs/1", json=BASELINE)
    before = revision(client)
    answer = client.patch("/api/runs/1", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    for word in words:
        assert word in detail, detail
    assert details(client.get("/api/runs/1").json()) == BASELINE
    assert revision(client) == before


@pytest.mark.parametrize(("raw", "words"), [(b"not json", ["not valid JSON"]),
                                            (b"[]", ["object"]), (b"null", ["object"])])
def test_a_body_that_is_no_object_is_422(client, raw, words):
    answer = client.patch("/api/runs/1", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and all(word in answer.json()["detail"] for word in words), \
        answer.text


def test_unknown_runs_are_404_and_bad_ids_422(client):
    answer = client.patch("/api/runs/99", json={"name": "x"})
    assert answer.status_code == 404 and "99" in answer.json()["detail"]
    assert client.patch("/api/runs/first", json={"name": "x"}).status_code == 422


def test_the_bounds_are_published_and_are_the_ones_enforced(client):
    options = client.get("/api/options").json()
    assert options["run_fields"] == ["name", "tags", "notes"]
    bounds = options["run_field_bounds"]
    assert bounds == {"name": {"max_length": schemas.NAME_MAX_LENGTH},
                      "tags": {"max_length": schemas.TAG_MAX_LENGTH,
                               "max_items": schemas.TAGS_MAX_ITEMS,
                               "pattern": schemas.TAG_PATTERN},
                      "notes": {"max_length": schemas.NOTES_MAX_LENGTH}}
    longest = {"name": "n" * bounds["name"]["max_length"],
               "tags": [f"{i:02d}" + "t" * (bounds["tags"]["max_length"] - 2)
                        for i in range(bounds["tags"]["max_items"])],
               "notes": "n" * bounds["notes"]["max_length"]}
    assert details(client.patch("/api/runs/1", json=longest).json()) == longest
    for field in ("name", "notes"):
        over = {field: longest[field] + "n"}
        assert client.patch("/api/runs/1", json=over).status_code == 422, field
    assert client.patch("/api/runs/1", json={"tags": [*longest["tags"], "one-more"]}).status_code \
        == 422
    assert client.patch("/api/runs/1", json={"tags": ["t" * (bounds["tags"]["max_length"] + 1)]}) \
        .status_code == 422
    # OpenAPI documents the same bounds.
    openapi = client.get("/openapi.json").json()
    operation = openapi["paths"]["/api/runs/{run_id}"]["patch"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/Run")
    body = openapi["components"]["schemas"]["RunDetails"]["properties"]
    assert body["tags"]["maxItems"] == schemas.TAGS_MAX_ITEMS
    assert body["tags"]["items"]["pattern"] == TAG_PATTERN_PUBLISHED  # the same rule (test_contract)


def test_a_change_bumps_the_run_lists_revision_and_its_stream_says_so(client):
    with client.websocket_connect("/ws/runs") as socket:
        seen = strict_json(socket.receive_text())["revision"]
        assert seen == revision(client)
        client.patch("/api/runs/2", json={"tags": ["new"]})
        announced = strict_json(socket.receive_text())
        assert announced == {"type": "changed", "revision": seen + 1}
    assert revision(client) == seen + 1
    client.patch("/api/runs/2", json={"tags": ["new"]})  # the same again: nothing changed
    assert revision(client) == seen + 1


def test_they_are_kept_across_a_restart(settings):
    with TestClient(create_app(settings)) as client:
        client.patch("/api/runs/2", json=BASELINE)
    with TestClient(create_app(settings)) as client:
        assert details(client.get("/api/runs/2").json()) == BASELINE
        assert details(client.get("/api/runs/1").json()) == {"name": None, "tags": [], "notes": None}
