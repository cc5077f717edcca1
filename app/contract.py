"""The OpenAPI document (/openapi.json, and /docs which reads it), made to tell the truth about
this server: the answer models come from app/schemas.py as FastAPI builds them; this module adds
what only the running server knows.

- Every config field's bounds: the engine's table (`engine.config.field_bounds`) tightened by
  this server's limits (`app.limits.field_bounds`), the same values GET /api/options sends, so a
  config the schema allows is one the server takes field by field. (What no JSON Schema can say
  is in the operation's description: a run as a whole may still be over a size limit.)
- Every status code any operation can answer, whoever answers it: the routes declare their own
  (404, 409, 422 ...); the layers in front of every route add theirs here (app/security.py: 400
  for a foreign Host, 401/403 for a missing token or a foreign Origin, 429 when rate-limited;
  app/connections.py and app/middleware.py: 408, 413, 431, 503; app/errors.py: 500, and 507
  when the data dir cannot be written). Each is the app's error body `{"detail": ...}`; a 422
  may add the structured `errors` list (`schemas.Invalid`).
- Links from a created run or sweep to what can be done with it, for clients and fuzzers that
  follow them.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import limits, schemas, security
from app.settings import Settings
from app.sweeps.space import BOOLEAN_FIELDS, MAX_CHOICES
from engine.presets import PRESETS

METHODS = ("get", "put", "post", "delete", "patch")
WRITES = ("put", "post", "delete", "patch")
ERROR = {"$ref": "#/components/schemas/Error"}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve `document(app, settings)` as the app's OpenAPI document (built once)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    components = doc.setdefault("components", {})
    models = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, not this app's
        models.pop(unused, None)
    models.update(_invalid_models())
    _bound_run_config(models, settings)
    models["RunDetails"]["properties"]["tags"]["items"]["pattern"] = TAG_PATTERN_PUBLISHED
    _bound_sweep(models, settings)
    components["responses"] = _shared_answers(settings)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method in METHODS:
                _declare_answers(path, method, operation, settings)
    _predict_body(doc["paths"]["/predict"]["post"], settings)
    _links(doc["paths"])
    return doc


# --- models ---------------------------------------------------------------------------------------
# The tag rule (schemas.TAG_PATTERN) with the code points U+20F1..U+20FF left out in so many words:
# they are unassigned, so no mark and no tag character either way, but fuzzers that cannot read
# Unicode classes approximate \p{M} with a block that holds them (Schemathesis does) and would
# then send them as valid.
TAG_CHARACTER_PUBLISHED = rf"(?:(?![\u20f1-\u20ff]){schemas.TAG_CHARACTER})"
TAG_PATTERN_PUBLISHED = schemas.TAG_PATTERN.replace(schemas.TAG_CHARACTER, TAG_CHARACTER_PUBLISHED)


def _invalid_models() -> dict[str, Any]:
    """schemas.Invalid and what it refers to, as JSON Schema components."""
    schema = schemas.Invalid.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Invalid": schema, **definitions}


def _bound_run_config(models: dict[str, Any], settings: Settings) -> None:
    """Put each field's bounds on this server into RunConfig and Augmentation."""
    fields = limits.field_bounds(settings)
    config = models["RunConfig"]["properties"]
    for name, prop in config.items():
        if name == "preset":
            _set_value(prop, {"type": "string", "enum": list(PRESETS)})
        elif name == "hidden_layers":
            bounds = fields[name]
            _set_value(prop, {"type": "array", "maxItems": bounds["max_items"],
                              "items": _number(bounds)})
        elif name in fields:
            _set_value(prop, _value_schema(fields[name]))
    for name, prop in models["Augmentation"]["properties"].items():  # a number, never null
        _set_value(prop, _value_schema(fields[f"augmentation.{name}"]), nullable=False)


def _value_schema(bounds: dict[str, Any]) -> dict[str, Any]:
    if "choices" in bounds:
        return {"type": "string", "enum": list(bounds["choices"])}
    return _number(bounds)


def _number(bounds: dict[str, Any]) -> dict[str, Any]:
    low, high = bounds["min"], bounds["max"]
    if bounds.get("integer"):
        return {"type": "integer", "minimum": int(low), "maximum": int(high)}
    return {"type": "number", "minimum": low, "maximum": high}


def _set_value(prop: dict[str, Any], value: dict[str, Any], nullable: bool = True) -> None:
    """A property that is `value`, or null if `nullable` (null: the preset's value)."""
    for key in ("anyOf", "type", "items", "maxLength", "maxItems"):
        prop.pop(key, None)
    if nullable:
        prop["anyOf"] = [value, {"type": "null"}]
    else:
        prop.pop("default", None)
        prop.update(value)


def _bound_sweep(models: dict[str, Any], settings: Settings) -> None:
    """A sweep: its base a config or a preset name; its space one entry per swept field, shaped
    by that field's bounds; trials and trials at once within this server's limits."""
    sweep = models["SweepCreate"]["properties"]
    sweep["base"]["anyOf"] = [{"$ref": "#/components/schemas/RunConfig"},
                              {"type": "string", "enum": list(PRESETS)}]
    space = sweep["space"]
    for key in ("additionalProperties", "type"):
        space.pop(key, None)
    space.update(_space(limits.field_bounds(settings)))
    models.pop("SpaceParam", None)  # described field by field instead
    _set_value(sweep["trials"], {"type": "integer", "minimum": 1,
                                 "maximum": settings.max_sweep_trials})
    _set_value(sweep["max_concurrent"], {"type": "integer", "minimum": 1,
                                         "maximum": settings.max_sweep_concurrent})
    sweep["seed"].update({"type": "integer", "minimum": 0, "maximum": 2**32 - 1})


def _space(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What app/sweeps/space.py takes, as far as JSON Schema can say it (not: a range's min below
    its max, its step within it)."""
    def values(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "required": ["values"],
                "properties": {"values": {"type": "array", "items": item, "minItems": 1,
                                          "maxItems": MAX_CHOICES, "uniqueItems": True}}}

    def ranges(number: dict[str, Any]) -> list[dict[str, Any]]:
        step = ({"type": "integer", "minimum": 1} if number["type"] == "integer"
                else {"type": "number", "exclusiveMinimum": 0})
        linear = {"type": "object", "additionalProperties": False, "required": ["min", "max"],
                  "properties": {"min": number, "max": number, "log": {"const": False},
                                 "step": {"anyOf": [step, {"type": "null"}]}}}
        positive = dict(number)  # a log scale starts above 0
        if positive["minimum"] <= 0:
            positive = {**number, "exclusiveMinimum": 0}
            del positive["minimum"]
        log = {"type": "object", "additionalProperties": False, "required": ["min", "max", "log"],
               "properties": {"min": positive, "max": positive, "log": {"const": True}}}
        return [linear, log]

    swept: dict[str, Any] = {}
    for name, bounds in fields.items():
        if "choices" in bounds:
            swept[name] = values({"type": "string", "enum": list(bounds["choices"])})
        elif name == "hidden_layers":
            swept[name] = values({"type": "array", "maxItems": bounds["max_items"],
                                  "items": _number(bounds)})
        else:
            number = _number(bounds)
            swept[name] = {"anyOf": [*ranges(number), values(number)]}
    for name in BOOLEAN_FIELDS:
        swept[name] = values({"type": "boolean"})
    return {"type": "object", "properties": swept, "additionalProperties": False,
            "minProperties": 1, "maxProperties": schemas.MAX_SWEPT_FIELDS}


def _predict_body(operation: dict[str, Any], settings: Settings) -> None:
    body = copy.deepcopy(operation["requestBody"])
    pixels = body["content"]["application/json"]["schema"]["properties"]["pixels"]
    pixels["anyOf"][1]["maxItems"] = settings.max_predict_batch
    operation["requestBody"] = body


# --- answers --------------------------------------------------------------------------------------
def _answer(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {"application/json": {"schema": ERROR}}}
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _shared_answers(settings: Settings) -> dict[str, Any]:
    """The answers of the layers in front of every route, as components/responses."""
    max_mb = settings.max_body_bytes / 2**20
    return {
        "BadHost": _answer("The Host header does not name this machine (a loopback server answers "
                           "only to localhost, 127.0.0.1 and [::1]); or the body is not UTF-8"),
        "NoToken": _answer("A change without `Authorization: Bearer <token>` (MNIST_LAB_TOKEN)",
                           {"WWW-Authenticate": {"schema": {"type": "string"}}}),
        "Forbidden": _answer("A change from a page of another origin, or a wrong token"),
        "TooSlow": _answer(f"The headers did not arrive within {settings.header_timeout_s:g} s or "
                           f"the body within {settings.body_timeout_s:g} s"),
        "TooLarge": _answer(f"The body is larger than {max_mb:g} MB (MNIST_LAB_MAX_BODY_BYTES), "
                            "however it is sent"),
        "TooManyRequests": _answer("Over this client's request rate (MNIST_LAB_RATE_LIMIT_PER_S), "
                                   "or a full queue", RETRY_AFTER),
        "HeadersTooLarge": _answer(f"The request line and headers are larger than "
                                   f"{settings.max_header_bytes} bytes"),
        "ServerError": _answer("An internal error; the server's log has the details"),
        "TooManyConnections": _answer(f"{settings.max_connections} connections are open, the "
                                      "server's limit", RETRY_AFTER),
        "StorageFull": _answer("The data dir cannot be written (full, read-only or failing); "
                               "nothing stored was changed, and reads keep working"),
    }


def _declare_answers(path: str, method: str, operation: dict[str, Any], settings: Settings) -> None:
    answers = operation.setdefault("responses", {})
    for status, answer in answers.items():
        if status == "422":
            answer["content"] = {"application/json": {"schema": {
                "$ref": "#/components/schemas/Invalid"}}}
    shared = {"400": "BadHost", "408": "TooSlow", "413": "TooLarge", "431": "HeadersTooLarge",
              "500": "ServerError", "503": "TooManyConnections"}
    if method in WRITES:
        shared["403"] = "Forbidden"  # the Origin check; and a wrong token
        if security.auth_required(settings) and path not in security.OPEN_WRITES:
            shared["401"] = "NoToken"
    if security.rate_per_second(settings) is not None or "429" in answers:
        shared["429"] = "TooManyRequests"
    if path not in ("/healthz", "/api/options"):
        shared["507"] = "StorageFull"
    for status, name in shared.items():
        answers.setdefault(status, {"$ref": f"#/components/responses/{name}"})
    operation["responses"] = dict(sorted(answers.items()))


# --- links ----------------------------------------------------------------------------------------
def _links(paths: dict[str, Any]) -> None:
    """From a created run or sweep (201) to every operation on it."""
    for created, prefix, parameter in (("/api/runs", "/api/runs/{run_id}", "run_id"),
                                       ("/api/sweeps", "/api/sweeps/{sweep_id}", "sweep_id")):
        links = {}
        for path, operations in paths.items():
            if not path.startswith(prefix):
                continue
            for method, operation in operations.items():
                if method in METHODS:
                    links[operation["operationId"]] = {
                        "operationId": operation["operationId"],
                        "parameters": {parameter: "$response.body#/id"}}
        paths[created]["post"]["responses"]["201"]["links"] = links
