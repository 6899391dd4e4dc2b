"""``auditkit serve``: any adapter's model as a logit API on 127.0.0.1 (the HTTP adapter's
default schema), for tests, demos and owners who want to try a black-box audit end to end."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from adapters.http_api import decode_image


def model_logits(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Logits of a white-box or black-box model."""
    if hasattr(model, "logits"):
        return model.logits(images)
    weight, bias = model.classifier()
    return model.features(images).double() @ torch.as_tensor(weight).T + torch.as_tensor(bias)


def make_server(model: Any, host: str = "127.0.0.1", port: int = 0, *, probabilities: bool = False) -> ThreadingHTTPServer:
    """An HTTP server answering ``POST /`` (any path) with ``{"logits": ...}`` (or ``"probs"``)."""
    lock = threading.Lock()  # one forward pass at a time

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                decoded = [decode_image(base64.b64decode(item, validate=True)) for item in body["images"]]
                images = torch.stack(decoded) if decoded else None
            except (ValueError, KeyError, TypeError, binascii.Error, OSError, RuntimeError) as exc:
                self._send(400, {"error": f"bad request: {exc}"})
                return
            if images is None:
                self._send(200, {"probs" if probabilities else "logits": []})
                return
            with lock, torch.no_grad():
                scores = model_logits(model, images).double()
            if probabilities:
                self._send(200, {"probs": torch.softmax(scores, dim=1).tolist()})
            else:
                self._send(200, {"logits": scores.tolist()})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI reports instead
            pass

    return ThreadingHTTPServer((host, port), Handler)
