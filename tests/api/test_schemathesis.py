"""Fuzz every operation of /openapi.json on a real server: no input may produce a 5xx."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import ApiSettings
from tests.api.conftest import serving, settings_for

EXAMPLES = 25


def test_no_input_gives_a_server_error(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(settings_for(tmp_path, sqlite_url), ApiSettings(max_body_bytes=256 * 1024))
    with serving(app) as url:
        # The SSE feed never ends by design (test_feeds.py covers it).
        schema = schemathesis.openapi.from_url(url + "/openapi.json").exclude(path="/api/events/feed")
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok)
            operations.append(result.ok())
        assert len(operations) >= 12
        statuses: Counter[int] = Counter()
        for operation in operations:
            for mode in GenerationMode:

                @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                @given(case=operation.as_strategy(mode))
                def fuzz(case: schemathesis.Case[Any]) -> None:
                    statuses[case.call_and_validate(checks=[not_a_server_error], timeout=30).status_code] += 1

                try:
                    fuzz()
                except Unsatisfiable:  # no parameters to break (GET /health has none)
                    assert mode is GenerationMode.NEGATIVE
        assert statuses[200] and statuses[422], statuses  # it reached the handlers and the validation
