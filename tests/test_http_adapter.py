"""The HTTP adapter against real HTTP servers on 127.0.0.1: retries and backoff on 429 and
5xx, timeouts, the query budget, the cache, headers from the environment, request templates
and response paths, and a one-line error for every way an API can fail."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters import AdapterOptions
from adapters.http_api import HttpModel, decode_image, encode_image, extract, fill_template, public_location
from auditkit.errors import AuditkitError

Behaviour = Callable[[int, dict[str, Any], dict[str, str]], tuple[int, Any, dict[str, str]]]


class ScriptedServer:
    """A real HTTP server whose answer to request number n is ``behaviour(n, body, headers)``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((body, headers))
                status, payload, extra = behaviour(len(server.requests), body, headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/predict"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def logits_for(body: dict[str, Any]) -> list[list[float]]:
    """A deterministic 'model': 3 scores from the mean colour of each image."""
    rows = []
    for item in body["images"]:
        image = decode_image(base64.b64decode(item))
        rows.append(image.mean((1, 2)).tolist())
    return rows


def ok(n: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    return 200, {"logits": logits_for(body)}, {}


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(behaviour: Behaviour) -> ScriptedServer:
        servers.append(ScriptedServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def model_for(url: str, tmp_path: Path, **extra: str) -> HttpModel:
    options = {"cache": str(tmp_path / "cache"), "backoff": "0.01", "retries": "3", "timeout": "5"} | extra
    return HttpModel(url, AdapterOptions(extra=options))


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_png_round_trip_is_lossless_at_8_bits() -> None:
    x = torch.randint(0, 256, (3, 5, 7)).float() / 255
    assert torch.equal(decode_image(encode_image(x)), x)


def test_answers_match_the_server_and_come_from_the_cache_the_second_time(serve, tmp_path: Path) -> None:
    server = serve(ok)
    x = images(5)
    first = model_for(server.url, tmp_path, batch_size="2")
    scores = first.logits(x)
    assert scores.shape == (5, 3) and first.queries == 5 and len(server.requests) == 3  # batches of 2
    expected = torch.tensor(logits_for({"images": [base64.b64encode(encode_image(i)).decode() for i in x]}), dtype=torch.float64)
    assert torch.allclose(scores, expected)
    again = model_for(server.url, tmp_path)
    assert torch.equal(again.logits(x), scores) and again.queries == 0 and len(server.requests) == 3


def test_429_then_success_is_retried_honouring_retry_after(serve, tmp_path: Path) -> None:
    server = serve(lambda n, body, h: (429, {"error": "slow down"}, {"Retry-After": "0.2"}) if n == 1 else ok(n, body, h))
    model = model_for(server.url, tmp_path)
    started = time.monotonic()
    assert model.logits(images(2)).shape == (2, 3)
    assert time.monotonic() - started >= 0.2  # waited as the server asked
    assert len(server.requests) == 2 and model.queries == 2


def test_a_500_storm_ends_in_a_one_line_error_after_the_retries(serve, tmp_path: Path) -> None:
    server = serve(lambda n, body, h: (503, b"unavailable", {}))
    model = model_for(server.url, tmp_path, retries="3")
    with pytest.raises(AuditkitError, match="answered HTTP 503 4 times") as error:
        model.logits(images(2))
    assert len(server.requests) == 4 and "\n" not in str(error.value)
    assert not list((tmp_path / "cache").rglob("*.json"))  # nothing cached from failed answers


def test_a_transient_500_is_survived(serve, tmp_path: Path) -> None:
    server = serve(lambda n, body, h: (500, b"oops", {}) if n <= 2 else ok(n, body, h))
    assert model_for(server.url, tmp_path).logits(images(1)).shape == (1, 3)
    assert len(server.requests) == 3


def test_timeouts_are_retried_then_reported(serve, tmp_path: Path) -> None:
    def slow_first(n: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if n == 1:
            time.sleep(0.6)
        return ok(n, body, headers)

    server = serve(slow_first)
    assert model_for(server.url, tmp_path, timeout="0.3").logits(images(1)).shape == (1, 3)
    assert len(server.requests) == 2

    always_slow = serve(lambda n, body, h: (time.sleep(0.6), ok(n, body, h))[1])
    with pytest.raises(AuditkitError, match=r"cannot reach .* \(ReadTimeout\) after 2 tries; .*--timeout"):
        model_for(always_slow.url, tmp_path, timeout="0.2", retries="1").logits(images(1))


def test_the_query_budget_stops_the_audit_and_keeps_what_was_paid_for(serve, tmp_path: Path) -> None:
    server = serve(ok)
    x = images(6)
    model = model_for(server.url, tmp_path, batch_size="2", max_queries="4")
    with pytest.raises(AuditkitError, match="query budget of 4 images exhausted after 4 queries"):
        model.logits(x)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4
    rerun = model_for(server.url, tmp_path, batch_size="2", max_queries="4")
    assert rerun.logits(x).shape == (6, 3) and rerun.queries == 2  # only the two missing images are sent


def test_rate_limit_spaces_requests(serve, tmp_path: Path) -> None:
    server = serve(ok)
    model = model_for(server.url, tmp_path, batch_size="1", rate="10")
    started = time.monotonic()
    model.logits(images(4))
    assert len(server.requests) == 4 and time.monotonic() - started >= 0.3


def test_headers_come_from_the_environment_and_stay_out_of_the_cache(serve, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUDITKIT_TEST_TOKEN", "s3cret-token")
    server = serve(lambda n, body, h: ok(n, body, h) if h.get("authorization") == "Bearer s3cret-token" else (401, b"no", {}))
    model = model_for(server.url, tmp_path, header="Authorization: Bearer s3cret-token")
    model.logits(images(1))
    model_for(server.url, tmp_path, header="Authorization: Bearer env:AUDITKIT_TEST_TOKEN").logits(images(1, seed=1))
    assert all(h["authorization"] == "Bearer s3cret-token" for _, h in server.requests)
    assert "s3cret" not in " ".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    monkeypatch.delenv("AUDITKIT_TEST_TOKEN")
    with pytest.raises(AuditkitError, match=r"reads \$AUDITKIT_TEST_TOKEN, which is not set"):
        model_for(server.url, tmp_path, header="Authorization: env:AUDITKIT_TEST_TOKEN")


def test_probabilities_are_turned_into_log_scores(serve, tmp_path: Path) -> None:
    server = serve(lambda n, body, h: (200, {"probs": [[0.5, 0.25, 0.25]] * len(body["images"])}, {}))
    scores = model_for(server.url, tmp_path).logits(images(2))
    assert torch.allclose(scores, torch.log(torch.tensor([[0.5, 0.25, 0.25]] * 2, dtype=torch.float64)))


def test_request_template_and_response_path_reach_other_apis(serve, tmp_path: Path) -> None:
    def tf_serving(n: int, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        rows = logits_for({"images": [item["b64"] for item in body["instances"]]})
        assert body["signature_name"] == "serving_default"
        return 200, {"data": [{"scores": row} for row in rows]}, {}

    server = serve(tf_serving)
    model = model_for(server.url, tmp_path, request_template='{"signature_name": "serving_default", "instances": [{"b64": "$image"}]}',
                      response_path="data.*.scores", scores="logits")
    assert model.logits(images(3)).shape == (3, 3)
    assert fill_template({"x": "$images", "k": 1}, ["a", "b"]) == {"x": ["a", "b"], "k": 1}
    assert extract({"a": [{"b": [1]}, {"b": [2]}]}, "a.*.b") == [[1], [2]]


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (lambda n, b, h: (404, b"not found", {}), "refused the request: HTTP 404"),
        (lambda n, b, h: (200, b"<html>hi</html>", {}), "did not answer JSON"),
        (lambda n, b, h: (200, {"scores": [[1, 2]]}, {}), "answered without 'logits' or 'probs'"),
        (lambda n, b, h: (200, {"logits": [[1.0, 2.0]]}, {}), "returned 1 score rows for 2 images"),
        (lambda n, b, h: (200, {"logits": [[1.0], [1.0, 2.0]]}, {}), "rows of unequal length"),
        (lambda n, b, h: (200, {"logits": [[1.0, "NaN"], [0.0, 1.0]]}, {}), "returned 0 score rows|non-finite"),
    ],
)
def test_bad_answers_get_one_line_errors(serve, tmp_path: Path, behaviour: Behaviour, message: str) -> None:
    server = serve(behaviour)
    with pytest.raises(AuditkitError, match=message) as error:
        model_for(server.url, tmp_path).logits(images(2))
    assert "\n" not in str(error.value)


def test_unreachable_api(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AuditkitError, match=r"cannot reach http://127.0.0.1:\d+/x \(ConnectError\) after 2 tries"):
        model_for(f"http://127.0.0.1:{port}/x", tmp_path, retries="1").logits(images(1))


def test_credentials_in_the_url_are_not_reported() -> None:
    assert public_location("https://user:pw@api.example.com:8443/v1?x=1") == "https://api.example.com:8443/v1?x=1"
    assert public_location("http://127.0.0.1:9/p") == "http://127.0.0.1:9/p"
