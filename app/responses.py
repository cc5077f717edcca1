"""JSON answers that are always valid JSON: NaN and infinities are refused, never sent."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class CleanJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
