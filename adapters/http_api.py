"""HTTP adapter: a black-box model behind a logit API (``--model http(s)://...``).

Default schema (``auditkit serve`` speaks it):

    POST <url>   {"images": ["<base64 PNG>", ...]}
    200          {"logits": [[...], ...]}   or   {"probs": [[...], ...]}

Other APIs are reached with a request template and a response path (``docs/blackbox.md``):
the template is JSON in which the string ``"$images"`` stands for the list of base64 PNGs, or
a one-element list ``[{..."$image"...}]`` is repeated once per image; the response path is
dotted (``predictions``, ``data.*.scores``; ``*`` maps over a list).

Options (``AdapterOptions.extra``, from the CLI): ``header`` ("Name: value" lines; a last word
``env:VAR`` is read from the environment, so tokens never reach the command line, the cache or
a report), ``timeout`` (s), ``retries``, ``backoff`` (first retry delay, s, doubled each time),
``rate`` (requests/s), ``max_queries`` (images), ``batch_size``, ``cache`` (directory),
``request_template``, ``response_path`` and ``scores`` (``logits`` or ``probs``; default: the
key the answer uses). Requests are retried on 429, 5xx, timeouts and refused connections
(``Retry-After`` honoured); answers are cached on disk by image digest, so a rerun — or a run
stopped by the query budget — does not pay twice. Only images are ever sent; TLS certificates
are verified.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import torch
from PIL import Image

from adapters.base import AdapterOptions
from auditkit.errors import AuditkitError
from auditkit.fsutil import atomic_write_bytes

DEFAULT_CACHE = Path(".auditkit-cache")
DEFAULT_TEMPLATE = '{"images": "$images"}'
IMAGES, IMAGE = "$images", "$image"


def encode_image(image: torch.Tensor) -> bytes:
    """A [3, H, W] image in [0, 1] as PNG bytes (lossless; 8-bit like the released files)."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes) -> torch.Tensor:
    """PNG (or any PIL-readable) bytes as a [3, H, W] float image in [0, 1]."""
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def public_location(url: str) -> str:
    """The URL as it may appear in a report or a log: without user:password@."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_headers(lines: str) -> dict[str, str]:
    """``Name: value`` lines to a dict. A value's last word ``env:VAR`` is replaced by ``$VAR``
    (``Authorization: Bearer env:API_TOKEN``), so a token never appears on the command line."""
    headers = {}
    for line in filter(None, (part.strip() for part in lines.split("\n"))):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise AuditkitError(f"--header {line!r} must look like 'Name: value'")
        prefix, _, last = value.strip().rpartition(" ")
        if last.startswith("env:"):
            if last[4:] not in os.environ:
                raise AuditkitError(f"--header {name.strip()} reads ${last[4:]}, which is not set")
            last = os.environ[last[4:]]
        headers[name.strip()] = f"{prefix} {last}" if prefix else last
    return headers


def _parse_template(text: str) -> Any:
    try:
        template = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditkitError(f"--request-template is not JSON ({exc.msg}); e.g. '{DEFAULT_TEMPLATE}'") from None
    if IMAGES not in json.dumps(template) and IMAGE not in json.dumps(template):
        raise AuditkitError(f"--request-template must contain \"{IMAGES}\" or [{{...\"{IMAGE}\"...}}]; e.g. '{DEFAULT_TEMPLATE}'")
    return template


def fill_template(template: Any, images: list[str]) -> Any:
    """The request body: ``"$images"`` replaced by the list, ``[x]`` with ``"$image"`` in x
    repeated once per image."""
    if isinstance(template, list) and len(template) == 1 and IMAGE in json.dumps(template[0]):
        return [_replace(template[0], IMAGE, image) for image in images]
    if isinstance(template, list):
        return [fill_template(item, images) for item in template]
    if isinstance(template, dict):
        return {key: fill_template(value, images) for key, value in template.items()}
    return list(images) if template == IMAGES else template


def _replace(node: Any, placeholder: str, value: str) -> Any:
    """A copy of ``node`` with every leaf equal to ``placeholder`` replaced by ``value``."""
    if isinstance(node, list):
        return [_replace(item, placeholder, value) for item in node]
    if isinstance(node, dict):
        return {key: _replace(item, placeholder, value) for key, item in node.items()}
    return value if node == placeholder else node


def extract(body: Any, path: str) -> Any:
    """Follow a dotted ``path`` into a JSON answer; ``*`` maps over a list."""
    if not path:
        return body
    head, _, rest = path.partition(".")
    if head == "*":
        if not isinstance(body, list):
            raise KeyError(path)
        return [extract(item, rest) for item in body]
    if isinstance(body, list) and head.isdigit():
        return extract(body[int(head)], rest)
    if not isinstance(body, dict) or head not in body:
        raise KeyError(path)
    return extract(body[head], rest)


class HttpModel:
    """A logit API as a :class:`~adapters.base.BlackBoxModel`."""

    def __init__(self, url: str, options: AdapterOptions) -> None:
        import httpx

        extra = options.extra
        self.url = url
        self.location = public_location(url)
        self.description = f"http:{self.location}"
        self.digest = hashlib.sha256(url.encode()).hexdigest()  # no file: the endpoint's identity
        self.timeout = float(extra.get("timeout") or 30)
        self.retries = int(extra.get("retries") or 5)
        self.backoff = float(extra.get("backoff") or 0.5)
        rate = float(extra.get("rate") or 0)
        self.min_interval = 1.0 / rate if rate > 0 else 0.0
        self.max_queries = int(extra["max_queries"]) if extra.get("max_queries") else None
        self.batch_size = int(extra.get("batch_size") or 32)
        self.template = _parse_template(extra.get("request_template") or DEFAULT_TEMPLATE)
        self.response_path = extra.get("response_path") or ""
        self.scores = extra.get("scores") or ""
        if self.scores not in ("", "logits", "probs"):
            raise AuditkitError(f"--scores must be logits or probs, got {self.scores!r}")
        self.cache = Path(extra.get("cache") or DEFAULT_CACHE) / self.digest[:16]
        self.queries = 0  # images sent over the network by this object
        self.requests = 0  # HTTP requests made (retries included)
        self._last_request = 0.0
        self._client = httpx.Client(timeout=self.timeout, headers=parse_headers(extra.get("header", "")), verify=True)
        self._num_classes: int | None = None

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            self._num_classes = int(self.logits(torch.full((1, 3, 8, 8), 0.5)).shape[1])
        return self._num_classes

    def _post(self, images: list[str]) -> Any:
        import httpx

        delay = self.backoff
        body = fill_template(self.template, images)
        for attempt in range(self.retries + 1):
            wait = self.min_interval - (time.monotonic() - self._last_request)
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()
            self.requests += 1
            try:
                response = self._client.post(self.url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt == self.retries:
                    raise AuditkitError(f"cannot reach {self.location} ({exc.__class__.__name__}) after {attempt + 1} tries; "
                                        "check the URL, that the API is up, or raise --timeout") from None
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    if attempt == self.retries:
                        raise AuditkitError(f"{self.location} answered HTTP {response.status_code} {attempt + 1} times; "
                                            "try later or lower --rate") from None
                    retry_after = response.headers.get("retry-after", "")
                    delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
                elif response.status_code >= 400:
                    raise AuditkitError(f"{self.location} refused the request: HTTP {response.status_code} "
                                        f"{response.text[:120]!r}; check the URL, --header and --request-template")
                else:
                    return self._json(response)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, response: Any) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, ValueError):
            raise AuditkitError(f"{self.location} did not answer JSON; it must return {{\"logits\": [[...]]}} "
                                "(or pass --response-path)") from None

    def _rows(self, body: Any, count: int) -> list[list[float]]:
        """Score rows of an answer, as log-scores (probabilities are logged)."""
        kind = self.scores
        try:
            if self.response_path:
                rows = extract(body, self.response_path)
            else:
                kind = kind or next(key for key in ("logits", "probs") if isinstance(body, dict) and key in body)
                rows = body[kind]
        except (KeyError, IndexError, StopIteration):
            where = self.response_path or "'logits' or 'probs'"
            raise AuditkitError(f"{self.location} answered without {where}; expected {{\"logits\": [[...]]}} "
                                "(or pass --response-path)") from None
        try:
            array = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.empty(0)
        if array.ndim != 2 or array.shape[0] != count:
            raise AuditkitError(f"{self.location} returned {array.shape[0] if array.ndim else 0} score rows for {count} "
                                "images (or rows of unequal length); check --response-path")
        if not np.isfinite(array).all():
            raise AuditkitError(f"{self.location} returned non-finite scores")
        if kind == "probs":
            if (array < 0).any():
                raise AuditkitError(f"{self.location} returned negative probabilities; pass --scores logits")
            array = np.log(np.maximum(array, 1e-300))
        return array.tolist()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        encoded = [encode_image(image) for image in images]
        keys = [hashlib.sha256(png).hexdigest() for png in encoded]
        rows: dict[str, list[float]] = {}
        for key in keys:
            path = self.cache / f"{key}.json"
            if path.exists():
                rows[key] = json.loads(path.read_text())
        missing = list({k: png for k, png in zip(keys, encoded) if k not in rows}.items())
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            if self.max_queries is not None and self.queries + len(chunk) > self.max_queries:
                raise AuditkitError(f"query budget of {self.max_queries} images exhausted after {self.queries} queries; "
                                    f"answers so far are cached in {self.cache}: raise --max-queries and run again")
            answer = self._rows(self._post([base64.b64encode(png).decode() for _, png in chunk]), len(chunk))
            self.queries += len(chunk)
            for (key, _), row in zip(chunk, answer):
                rows[key] = row
                atomic_write_bytes(self.cache / f"{key}.json", json.dumps(row).encode())
        if len({len(rows[k]) for k in keys}) > 1:
            raise AuditkitError(f"{self.location} returned score rows of different lengths; clear {self.cache} if the API changed")
        return torch.tensor([rows[k] for k in keys], dtype=torch.float64)


def load_model(location: str, options: AdapterOptions) -> HttpModel:
    """Adapter entry point."""
    if not location.startswith(("http://", "https://")):
        raise AuditkitError(f"the http adapter needs an http(s):// URL, got {location!r}")
    return HttpModel(location, options)
