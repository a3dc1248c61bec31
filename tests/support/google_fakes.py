"""A wire-level fake of the three Google REST APIs the responder calls, in one local HTTP server.

The real client libraries (gapic REST transports for GKE and SCC, google-cloud-logging's HTTP client) talk to it over
HTTP on 127.0.0.1, so URL paths, verbs, query parameters, JSON field names, enum encodings and error bodies are all
exercised. Point a client at it with ``client_options={"api_endpoint": fake.url}`` (an ``http://`` URL: the gapic REST
transports keep a scheme given in the host, see ``transports/rest_base.py`` in each client library) and anonymous
credentials; the :func:`google_settings` fixture gives a :class:`responder.config.Settings` wired that way.

Served (everything else is 404, a wrong verb 405, a body it cannot read 400, in Google's JSON error format):

- GKE:   ``GET /v1/projects/P/locations/L/clusters/C`` (and the legacy ``/v1/projects/P/zones/Z/clusters/C``)
- Logging: ``POST /v2/entries:list`` with a real (small) Logging-query-language evaluator: ``AND``/``OR``/``NOT``
  (OR binds tighter than AND, as in LQL), parentheses, ``= != < <= > >= : =~ !~``, ``log_id("...")``, quoted
  path segments (``labels."k8s-pod/app"``), timestamps and severities compared as such, string comparisons
  case-insensitive except regexes. A filter it cannot parse is a 400, so a malformed filter fails a test.
- SCC v1 and v2: ``GET /vN/{parent}/findings?filter=name="..."``, ``PATCH /vN/{finding}/securityMarks?updateMask=``,
  ``POST /vN/{finding}:setState`` (v1 requires ``startTime``; v2 rejects it as an unknown field, like the real API).

Every request is recorded (:attr:`GoogleFake.requests`). Faults for reliability tests: :attr:`GoogleFake.latency_s`,
:attr:`GoogleFake.fail_ratio` (seeded RNG choosing among :attr:`GoogleFake.fail_modes`: 503, 429 or ``"hang"``, which
holds the request for :attr:`GoogleFake.hang_s` then answers 504), and :meth:`GoogleFake.fail_next` (the next N
requests matching a path pattern get a given status).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from responder.config import Settings

# ------------------------------------------------------------------------------------------------------ recording


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # URL-decoded
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None
    headers: dict[str, str]
    status: int = 0  # what the fake answered
    fault: str | None = None  # the injected fault, if any

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _FailRule:
    pattern: str
    remaining: int
    status: int | str


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ApiError(Exception):
    """Raised by a handler; becomes a Google JSON error response."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")


def error_body(code: int, message: str, status: str | None = None) -> dict[str, Any]:
    """Google's JSON error envelope (what api_core's ``from_http_response`` parses)."""
    return {"error": {"code": code, "message": message, "status": status or _STATUS_NAMES.get(code, "UNKNOWN")}}


# ---------------------------------------------------------------------------------------------- time and enums


def rfc3339(value: datetime | str) -> str:
    """Normalise a datetime or RFC 3339 string to ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    moment = parse_time(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def parse_time(text: str) -> datetime:
    """RFC 3339 with 0-9 fractional digits; ValueError otherwise."""
    match = _RFC3339.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    day, clock, fraction, zone = match.groups()
    micros = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(f"{day}T{clock}.{micros}{zone}")


_FINDING_STATES = {0: "STATE_UNSPECIFIED", 1: "ACTIVE", 2: "INACTIVE"}
_SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}


def _enum(value: Any, names: dict[int, str], what: str) -> str:
    """Requests carry enums as ints (``$alt=json;enum-encoding=int``) or names; both are accepted."""
    if isinstance(value, int) and value in names:
        return names[value]
    if isinstance(value, str) and value in names.values():
        return value
    raise ApiError(400, f"Invalid value at '{what}': {value!r}")


# --------------------------------------------------------------------------------------- Logging query language


class FilterError(ValueError):
    """The filter is not one the fake (or the real API) accepts."""


_LOG_ENTRY_FIELDS = frozenset(
    {
        "logName",
        "resource",
        "timestamp",
        "receiveTimestamp",
        "severity",
        "insertId",
        "httpRequest",
        "labels",
        "operation",
        "trace",
        "spanId",
        "traceSampled",
        "sourceLocation",
        "textPayload",
        "jsonPayload",
        "protoPayload",
        "split",
    }
)
_OPERATORS = (">=", "<=", "!=", "=~", "!~", "=", "<", ">", ":")
_WORD = re.compile(r"[A-Za-z0-9_\-+@$*/]+(?:\.[A-Za-z0-9_\-+@$*/]+)*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class _Tok:
    kind: str  # STR WORD OP LP RP DOT COMMA AND OR NOT END
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            j, chars = i + 1, []
            while True:
                if j >= len(text):
                    raise FilterError(f"unterminated string at {i}")
                c = text[j]
                if c == "\\" and j + 1 < len(text):
                    nxt = text[j + 1]
                    # \" and \\ are escapes; any other backslash is kept, so regex escapes like \. survive.
                    chars.append(nxt if nxt in '"\\' else c + nxt)
                    j += 2
                    continue
                if c == '"':
                    break
                chars.append(c)
                j += 1
            tokens.append(_Tok("STR", "".join(chars), i))
            i = j + 1
            continue
        if ch in "(),.":
            tokens.append(_Tok({"(": "LP", ")": "RP", ",": "COMMA", ".": "DOT"}[ch], ch, i))
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op:
            tokens.append(_Tok("OP", op, i))
            i += len(op)
            continue
        match = _WORD.match(text, i)
        if not match:
            raise FilterError(f"unexpected character {ch!r} at {i}")
        word = match.group(0)
        kind = word if word in ("AND", "OR", "NOT") else "WORD"
        tokens.append(_Tok(kind, word, i))
        i = match.end()
    tokens.append(_Tok("END", "", len(text)))
    return tokens


class _Parser:
    """expr := or_expr ((AND)? or_expr)* ; or_expr := unary (OR unary)* ; unary := NOT unary | primary."""

    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if kind is not None and tok.kind != kind:
            raise FilterError(f"expected {kind} at {tok.pos}, found {tok.text or 'end'!r}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        if self.peek().kind == "END":
            return lambda _entry: True
        pred = self.expr()
        if self.peek().kind != "END":
            raise FilterError(f"unexpected {self.peek().text!r} at {self.peek().pos}")
        return pred

    def expr(self) -> Predicate:
        terms = [self.or_expr()]
        while self.peek().kind not in ("END", "RP"):
            if self.peek().kind == "AND":
                self.take()
            terms.append(self.or_expr())
        return terms[0] if len(terms) == 1 else lambda e: all(t(e) for t in terms)

    def or_expr(self) -> Predicate:
        terms = [self.unary()]
        while self.peek().kind == "OR":
            self.take()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else lambda e: any(t(e) for t in terms)

    def unary(self) -> Predicate:
        if self.peek().kind == "NOT":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok.kind == "LP":
            self.take()
            inner = self.expr()
            self.take("RP")
            return inner
        if tok.kind == "WORD" and self.toks[self.i + 1].kind == "LP":
            return self.function()
        if tok.kind not in ("WORD", "STR"):
            raise FilterError(f"expected a comparison at {tok.pos}, found {tok.text or 'end'!r}")
        path = self.field_path()
        op = self.take("OP").text
        values = self.values()
        return _comparison(path, op, values)

    def function(self) -> Predicate:
        name = self.take("WORD").text
        self.take("LP")
        arg = self.take("STR").text
        self.take("RP")
        if name != "log_id":
            raise FilterError(f"function {name}() is not supported by the fake")
        return lambda e: _log_id(e) == arg

    def field_path(self) -> list[str]:
        segments: list[str] = []
        while True:
            tok = self.take()
            if tok.kind == "WORD":
                parts = tok.text.split(".")
                if not all(_IDENT.fullmatch(p) for p in parts):
                    raise FilterError(f"bad field name {tok.text!r} at {tok.pos}")
                segments.extend(parts)
            elif tok.kind == "STR" and segments:
                segments.append(tok.text)
            else:
                raise FilterError(f"expected a field name at {tok.pos}")
            if self.peek().kind != "DOT":
                break
            self.take("DOT")
        if segments[0] not in _LOG_ENTRY_FIELDS:
            raise FilterError(f"unknown LogEntry field {segments[0]!r}")
        return segments

    def values(self) -> list[str]:
        """A value, or ``("a" OR "b")``."""
        if self.peek().kind == "LP":
            self.take()
            values = [self.value()]
            while self.peek().kind == "OR":
                self.take()
                values.append(self.value())
            self.take("RP")
            return values
        return [self.value()]

    def value(self) -> str:
        tok = self.take()
        if tok.kind not in ("STR", "WORD"):
            raise FilterError(f"expected a value at {tok.pos}, found {tok.text or 'end'!r}")
        return tok.text


def _log_id(entry: dict[str, Any]) -> str | None:
    log_name = entry.get("logName", "")
    return unquote(log_name.split("/logs/", 1)[1]) if "/logs/" in log_name else None


def _resolve(entry: Any, path: list[str]) -> list[Any]:
    """Values at ``path``; lists fan out (a comparison holds when any element matches)."""
    current = [entry]
    for segment in path:
        nxt: list[Any] = []
        for value in current:
            if isinstance(value, dict) and segment in value:
                child = value[segment]
                nxt.extend(child if isinstance(child, list) else [child])
        current = nxt
    return current


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _comparison(path: list[str], op: str, values: list[str]) -> Predicate:
    kind = "time" if path in (["timestamp"], ["receiveTimestamp"]) else "severity" if path == ["severity"] else "str"
    if op in ("=~", "!~"):
        try:
            patterns = [re.compile(v) for v in values]
        except re.error as exc:
            raise FilterError(f"invalid regular expression: {exc}") from exc
    if kind == "time":
        if op in (":", "=~", "!~"):
            raise FilterError(f"operator {op} does not apply to timestamps")
        try:
            bounds: list[Any] = [parse_time(v) for v in values]
        except ValueError as exc:
            raise FilterError(str(exc)) from exc
    elif kind == "severity":
        try:
            bounds = [int(v) if v.isdigit() else _SEVERITIES[v.upper()] for v in values]
        except KeyError as exc:
            raise FilterError(f"unknown severity {exc}") from exc

    def test_one(actual: Any, index: int) -> bool:
        if op in ("=~", "!~"):
            text = _scalar(actual)
            found = text is not None and patterns[index].search(text) is not None
            return found if op == "=~" else not found
        if kind == "time":
            try:
                left: Any = parse_time(str(actual))
            except ValueError:
                return False
            right: Any = bounds[index]
        elif kind == "severity":
            left = _SEVERITIES.get(str(actual).upper(), 0)
            right = bounds[index]
        else:
            text = _scalar(actual)
            if text is None:
                return op == ":" and values[index] == "*"
            if op == ":":
                return values[index] == "*" or values[index].lower() in text.lower()
            left, right = text.lower(), values[index].lower()
            with contextlib.suppress(ValueError):  # numbers compare as numbers
                left, right = float(left), float(right)
        outcome: bool = {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
            ":": left == right,
        }[op]
        return outcome

    def predicate(entry: dict[str, Any]) -> bool:
        actuals = _resolve(entry, path)
        if op in ("!=", "!~") and not actuals:
            return True
        return any(test_one(a, i) for a in actuals for i in range(len(values)))

    return predicate


def parse_log_filter(text: str) -> Predicate:
    """Compile a Logging filter into a predicate over entry JSON; :class:`FilterError` when it cannot."""
    if len(text) > 20_000:
        raise FilterError("filter longer than 20000 characters")
    return _Parser(text).parse()


# --------------------------------------------------------------------------------------------------- seed data


def gke_cluster(
    project: str,
    location: str,
    name: str,
    *,
    endpoint: str | None = "34.118.10.20",
    private_endpoint: str | None = None,
    legacy_private_endpoint: str | None = None,
    dns_endpoint: str | None = None,
    dns_external: bool = True,
    public_access: bool = True,
    ip_endpoints: bool = True,
    ca_certificate: str | None = None,
    labels: dict[str, str] | None = None,
    network_policy: bool = False,
    datapath_provider: str | None = None,
    autopilot: bool = False,
    status: str = "RUNNING",
    version: str = "1.31.5-gke.1023000",
) -> dict[str, Any]:
    """A ``Cluster`` JSON as the GKE API returns it (only non-default fields present, as proto3 JSON does).

    ``public_access=False``: a private endpoint only (``enablePrivateEndpoint``): ``Cluster.endpoint`` is then the
    private IP, and the older ``privateClusterConfig`` still lists the control plane's unused external IP.
    ``ip_endpoints=False``: IP endpoints off (DNS-based endpoint only): no IP anywhere, ``Cluster.endpoint`` empty.
    """
    zonal = bool(re.fullmatch(r".*[0-9]-[a-z]", location))
    body: dict[str, Any] = {
        "name": name,
        "location": location,
        "zone": location,
        "status": status,
        "currentMasterVersion": version,
        "selfLink": f"https://container.googleapis.com/v1/projects/{project}/{'zones' if zonal else 'locations'}"
        f"/{location}/clusters/{name}",
        "masterAuth": {"clusterCaCertificate": ca_certificate or base64.b64encode(b"-----BEGIN CERT...").decode()},
        "resourceLabels": dict(labels or {}),
        "networkConfig": {"network": f"projects/{project}/global/networks/default"},
        "controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"enabled": True, "enablePublicEndpoint": True}},
    }
    if endpoint:
        body["endpoint"] = endpoint
        body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["publicEndpoint"] = endpoint
    if private_endpoint:
        body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["privateEndpoint"] = private_endpoint
    if legacy_private_endpoint:
        body["privateClusterConfig"] = {"enablePrivateNodes": True, "privateEndpoint": legacy_private_endpoint}
    ip_config = body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]
    if not public_access:
        private_ip = private_endpoint or "10.128.0.2"
        ip_config.update(enablePublicEndpoint=False, privateEndpoint=private_ip)
        ip_config.pop("publicEndpoint", None)
        body["endpoint"] = private_ip
        body["privateClusterConfig"] = {
            "enablePrivateNodes": True,
            "enablePrivateEndpoint": True,
            "privateEndpoint": private_ip,
            "publicEndpoint": endpoint or "34.118.10.99",
        }
    if not ip_endpoints:
        body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"] = {"enabled": False}
        body.pop("endpoint", None)
        body.pop("privateClusterConfig", None)
    if dns_endpoint:
        body["controlPlaneEndpointsConfig"]["dnsEndpointConfig"] = {
            "endpoint": dns_endpoint,
            "allowExternalTraffic": dns_external,
        }
    if network_policy:
        body["networkPolicy"] = {"provider": "CALICO", "enabled": True}
        body["addonsConfig"] = {"networkPolicyConfig": {}}
    if datapath_provider:
        body["networkConfig"]["datapathProvider"] = datapath_provider
    if autopilot:
        body["autopilot"] = {"enabled": True}
    return body


_FINDING_NAME = re.compile(
    r"(?P<scope>(?:organizations|folders|projects)/[^/]+)/sources/(?P<source>[^/]+)"
    r"(?:/locations/(?P<location>[^/]+))?/findings/(?P<id>[^/]+)"
)
_LIST_PARENT = re.compile(
    r"(?P<scope>(?:organizations|folders|projects)/[^/]+)/sources/(?P<source>[^/]+)(?:/locations/(?P<location>[^/]+))?"
)
_NAME_FILTER = re.compile(r'\s*name\s*=\s*"((?:[^"\\]|\\.)*)"\s*')


# -------------------------------------------------------------------------------------------------- the server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GoogleFake:
    """State, recording and fault injection behind one local HTTP server. Start with :meth:`start`."""

    def __init__(self, seed: int = 0) -> None:
        self.clusters: dict[str, dict[str, Any]] = {}  # "projects/P/locations/L/clusters/C" -> Cluster JSON
        self.findings: dict[str, dict[str, Any]] = {}  # finding name -> Finding JSON
        self.resources: dict[str, dict[str, Any]] = {}  # finding name -> ListFindingsResult.resource JSON
        self.log_entries: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        # faults
        self.latency_s = 0.0
        self.fail_ratio = 0.0
        self.fail_modes: tuple[int | str, ...] = (503, 429, "hang")
        self.hang_s = 30.0
        self.faults_injected = 0
        self._rules: list[_FailRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._insert_ids = 0

    # ---- lifecycle
    def start(self) -> GoogleFake:
        """Serve on 127.0.0.1 on a free port, in a background thread."""
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="google-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The port chosen at :meth:`start`."""
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, usable as every client's ``api_endpoint``."""
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> Settings:
        """Settings whose three Google endpoints point here, with anonymous credentials."""
        values: dict[str, Any] = {
            "scc_endpoint": self.url,
            "logging_endpoint": self.url,
            "container_endpoint": self.url,
            "anonymous_google": True,
        }
        values.update(overrides)
        return Settings(**values)

    # ---- seeding
    def add_cluster(self, path: str, body: dict[str, Any] | None = None, **builder_args: Any) -> dict[str, Any]:
        """Seed a cluster at ``projects/P/locations/L/clusters/C``: ``body`` as given, else :func:`gke_cluster`."""
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)", path)
        if not match:
            raise ValueError(f"cluster path {path!r} is not projects/P/locations/L/clusters/C")
        cluster = body if body is not None else gke_cluster(*match.groups(), **builder_args)
        with self._lock:
            self.clusters[path] = cluster
        return cluster

    def add_finding(
        self,
        name: str,
        *,
        state: str = "ACTIVE",
        mute: str | None = None,
        category: str = "Reverse Shell",
        resource_name: str = "//container.googleapis.com/projects/demo-project/locations/us-central1/clusters/prod",
        marks: dict[str, str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Seed a finding by name (v1 ``.../findings/F`` or v2 ``.../locations/L/findings/F``)."""
        match = _FINDING_NAME.fullmatch(name)
        if not match:
            raise ValueError(f"{name!r} is not a finding name")
        parent = name.rsplit("/findings/", 1)[0]
        finding: dict[str, Any] = {
            "name": name,
            "parent": parent,
            "resourceName": resource_name,
            "state": state,
            "category": category,
            "findingClass": "THREAT",
            "severity": "CRITICAL",
            "eventTime": rfc3339(datetime.now(UTC)),
            "createTime": rfc3339(datetime.now(UTC)),
            "securityMarks": {"name": f"{name}/securityMarks", "marks": dict(marks or {})},
            **extra,
        }
        if mute:
            finding["mute"] = mute
        project = resource_name.split("/projects/", 1)[1].split("/", 1)[0] if "/projects/" in resource_name else ""
        resource: dict[str, Any] = {
            "name": resource_name,
            "type": "google.container.Cluster",
            "service": "container.googleapis.com",
        }
        if match["location"]:
            resource["gcpMetadata"] = {"project": f"//cloudresourcemanager.googleapis.com/projects/{project}"}
        else:
            resource["projectName"] = f"//cloudresourcemanager.googleapis.com/projects/{project}"
        with self._lock:
            self.findings[name] = finding
            self.resources[name] = resource
        return finding

    def add_log_entry(
        self,
        *,
        log_name: str,
        timestamp: datetime | str,
        resource_type: str = "k8s_container",
        resource_labels: dict[str, str] | None = None,
        text_payload: str | None = None,
        json_payload: dict[str, Any] | None = None,
        proto_payload: dict[str, Any] | None = None,
        severity: str = "DEFAULT",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Seed a LogEntry; ``log_name`` is ``projects/P/logs/<url-encoded log id>``."""
        if not re.fullmatch(r"projects/[^/]+/logs/[^/]+", log_name):
            raise ValueError(f"log name {log_name!r} is not projects/P/logs/LOG_ID")
        with self._lock:
            self._insert_ids += 1
            entry: dict[str, Any] = {
                "logName": log_name,
                "resource": {"type": resource_type, "labels": dict(resource_labels or {})},
                "timestamp": rfc3339(timestamp),
                "receiveTimestamp": rfc3339(timestamp),
                "severity": severity,
                "insertId": f"fake-{self._insert_ids:08d}",
            }
            if labels:
                entry["labels"] = dict(labels)
            if text_payload is not None:
                entry["textPayload"] = text_payload
            if json_payload is not None:
                entry["jsonPayload"] = json_payload
            if proto_payload is not None:
                entry["protoPayload"] = proto_payload
            self.log_entries.append(entry)
        return entry

    # ---- faults
    def fail_next(self, n: int = 1, *, status: int | str = 503, path: str = "*") -> None:
        """The next ``n`` requests whose path matches the glob ``path`` get ``status`` (or ``"hang"``)."""
        with self._lock:
            self._rules.append(_FailRule(path, n, status))

    def reseed(self, seed: int) -> None:
        """Restart the fault RNG (same seed, same fault sequence for the same request sequence)."""
        with self._lock:
            self._rng = random.Random(seed)

    # ---- inspection
    def requests_to(self, method: str | None = None, path: str = "*") -> list[RecordedRequest]:
        """Recorded requests by verb and path glob, oldest first."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and fnmatch.fnmatchcase(r.path, path)
            ]

    # ---- WSGI
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        path = unquote(request.path)
        raw = request.get_data(cache=True)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        query = {key: request.args.getlist(key) for key in request.args}
        headers = {key.lower(): value for key, value in request.headers.items()}

        fault = self._pick_fault(path)
        if self.latency_s:
            self._stopping.wait(self.latency_s)
        if fault == "hang":
            self._stopping.wait(self.hang_s)
            code, payload = 504, error_body(504, "injected: deadline exceeded after hanging")
        elif fault is not None:
            status = int(fault)
            code, payload = status, error_body(status, f"injected fault {status}")
        elif isinstance(body, dict) and "_unparsed" in body:
            code, payload = 400, error_body(400, "Invalid JSON payload received.")
        else:
            try:
                code, payload = 200, self._route(request.method, path, request.args, body)
            except ApiError as exc:
                code, payload = exc.code, error_body(exc.code, exc.message, exc.status)
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    query=query,
                    body=body,
                    headers=headers,
                    status=code,
                    fault=None if fault is None else str(fault),
                )
            )
        response = Response(json.dumps(payload), status=code, content_type="application/json; charset=UTF-8")
        return response(environ, start_response)

    def _pick_fault(self, path: str) -> int | str | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and fnmatch.fnmatchcase(path, rule.pattern):
                    rule.remaining -= 1
                    self.faults_injected += 1
                    return rule.status
            if self.fail_ratio and self._rng.random() < self.fail_ratio:
                self.faults_injected += 1
                return self._rng.choice(self.fail_modes)
        return None

    def _route(self, method: str, path: str, args: Any, body: Any) -> dict[str, Any]:
        routes: list[tuple[str, str, Callable[..., dict[str, Any]]]] = [
            (r"/v1/projects/([^/]+)/(?:locations|zones)/([^/]+)/clusters/([^/:]+)", "GET", self._get_cluster),
            (r"/v2/entries:list", "POST", self._list_entries),
            (r"/(v1|v2)/(.+/sources/[^/]+(?:/locations/[^/]+)?)/findings", "GET", self._list_findings),
            (r"/(v1|v2)/(.+/sources/[^/]+(?:/locations/[^/]+)?/findings/[^/:]+)/securityMarks", "PATCH", self._marks),
            (r"/(v1|v2)/(.+/sources/[^/]+(?:/locations/[^/]+)?/findings/[^/:]+):setState", "POST", self._set_state),
        ]
        for pattern, verb, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                if method != verb:
                    raise ApiError(405, f"method {method} not allowed on {path}")
                return handler(*match.groups(), args=args, body=body)
        raise ApiError(404, f"the fake does not serve {method} {path}")

    # ---- GKE
    def _get_cluster(self, project: str, location: str, name: str, *, args: Any, body: Any) -> dict[str, Any]:
        with self._lock:
            cluster = self.clusters.get(f"projects/{project}/locations/{location}/clusters/{name}")
        if cluster is None:
            raise ApiError(404, f"Not found: projects/{project}/locations/{location}/clusters/{name}.")
        return cluster

    # ---- Logging
    def _list_entries(self, *, args: Any, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "entries.list needs a JSON body")
        unknown = set(body) - {"resourceNames", "filter", "orderBy", "pageSize", "pageToken", "projectIds"}
        if unknown:
            raise ApiError(400, f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}")
        names = body.get("resourceNames") or []
        if not names or not all(isinstance(n, str) and re.fullmatch(r"projects/[^/]+", n) for n in names):
            raise ApiError(400, f"resourceNames must be projects/P (the fake serves projects only): {names!r}")
        order = body.get("orderBy", "timestamp asc")
        if order not in ("timestamp asc", "timestamp desc"):
            raise ApiError(400, f"orderBy must be 'timestamp asc' or 'timestamp desc', not {order!r}")
        page_size = int(body.get("pageSize") or 50)
        if not 0 < page_size <= 1000:
            raise ApiError(400, f"pageSize must be 1..1000, not {page_size}")
        try:
            predicate = parse_log_filter(body.get("filter", ""))
        except FilterError as exc:
            raise ApiError(400, f"Unparseable filter: {exc}") from exc
        projects = {n.split("/", 1)[1] for n in names}
        with self._lock:
            matched = [e for e in self.log_entries if e["logName"].split("/")[1] in projects and predicate(e)]
        matched.sort(key=lambda e: (parse_time(e["timestamp"]), e["insertId"]), reverse=order == "timestamp desc")
        offset = 0
        if body.get("pageToken"):
            try:
                offset = int(base64.urlsafe_b64decode(body["pageToken"].encode()).decode().removeprefix("offset:"))
            except ValueError as exc:
                raise ApiError(400, "invalid page token") from exc
        page = matched[offset : offset + page_size]
        result: dict[str, Any] = {}
        if page:
            result["entries"] = page
        if offset + page_size < len(matched):
            result["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{offset + page_size}".encode()).decode()
        return result

    # ---- SCC
    def vouch_for(self, doc: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        """Seed SCC's own record of the finding notification ``doc`` describes, as a genuine notification mirrors it:
        every field of the message's finding (node pools, container, connection and all: what SCC vouches for is
        compared field by field), but none of the marks the message carries (SCC's record holds its own); an event
        time the message lacks is SCC's own (now). ``overrides`` change fields (an unrelated finding under that name).
        """
        f = json.loads(json.dumps(doc["finding"]))
        props = f.get("sourceProperties") or {}
        pods = (f.get("kubernetes") or {}).get("pods") or []
        fields: dict[str, Any] = {
            key: value
            for key, value in f.items()
            if key not in {"name", "parent", "securityMarks", "resourceName", "state", "category", "mute"}
        }
        fields.update(
            state=f.get("state", "ACTIVE"),
            category=f.get("category", "Reverse Shell"),
            resource_name=f.get("resourceName") or doc.get("resource", {}).get("name"),
            severity=f.get("severity", "CRITICAL"),
            sourceProperties={
                **props,
                "Pod_Namespace": props.get("Pod_Namespace") or (pods[0].get("ns") if pods else None),
                "Pod_Name": props.get("Pod_Name") or (pods[0].get("name") if pods else None),
            },
        )
        if f.get("mute") == "MUTED":
            fields["mute"] = "MUTED"
        if not f.get("eventTime"):
            fields.pop("eventTime", None)  # SCC's own: now, when it is seeded
        fields.update(overrides)
        return self.add_finding(f["name"], **fields)

    def _finding_or_404(self, name: str) -> dict[str, Any]:
        finding = self.findings.get(name)
        if finding is None:
            raise ApiError(404, f"Requested entity was not found: {name}")
        return finding

    def _list_findings(self, version: str, parent: str, *, args: Any, body: Any) -> dict[str, Any]:
        match = _LIST_PARENT.fullmatch(parent)
        if not match or (version == "v1" and match["location"]):
            raise ApiError(404, f"no such collection {version}/{parent}/findings")
        raw_filter = args.get("filter", "")
        wanted: str | None = None
        if raw_filter:
            name_match = _NAME_FILTER.fullmatch(raw_filter)
            if not name_match:
                raise ApiError(400, f"the fake supports only filter 'name=\"...\"', got {raw_filter!r}")
            wanted = re.sub(r"\\(.)", r"\1", name_match.group(1))
        results = []
        with self._lock:
            for name, finding in sorted(self.findings.items()):
                f_match = _FINDING_NAME.fullmatch(name)
                assert f_match is not None
                if f_match["scope"] != match["scope"] or match["source"] not in ("-", f_match["source"]):
                    continue
                location = f_match["location"] or "global"
                if version == "v1" and f_match["location"]:
                    continue
                if version == "v2" and (match["location"] or "global") != location:
                    continue
                if wanted is not None and name != wanted:
                    continue
                results.append({"finding": finding, "resource": self.resources.get(name, {})})
        response: dict[str, Any] = {"readTime": rfc3339(datetime.now(UTC)), "totalSize": len(results)}
        if results:
            response["listFindingsResults"] = results
        return response

    def _marks(self, version: str, name: str, *, args: Any, body: Any) -> dict[str, Any]:
        from google.protobuf import field_mask_pb2

        if not isinstance(body, dict) or body.get("name", f"{name}/securityMarks") != f"{name}/securityMarks":
            raise ApiError(400, "security_marks.name does not match the URL")
        if version == "v2" and "startTime" in args:
            raise ApiError(400, 'Invalid JSON payload received. Unknown name "startTime"')
        mask = field_mask_pb2.FieldMask()
        try:
            mask.FromJsonString(args.get("updateMask", ""))  # proto3 JSON: camelCase paths back to snake_case
        except ValueError as exc:
            raise ApiError(400, f"Invalid update mask: {exc}") from exc
        new_marks = body.get("marks") or {}
        with self._lock:
            finding = self._finding_or_404(name)
            current = finding["securityMarks"].setdefault("marks", {})
            paths = list(mask.paths)
            if not paths or "marks" in paths:
                current.clear()
                current.update(new_marks)
            else:
                for path in paths:
                    if not path.startswith("marks."):
                        raise ApiError(400, f"Invalid update mask path {path!r}")
                    key = path.removeprefix("marks.")
                    if key in new_marks:
                        current[key] = new_marks[key]
                    else:
                        current.pop(key, None)
            return dict(finding["securityMarks"])

    def _set_state(self, version: str, name: str, *, args: Any, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "setState needs a JSON body")
        allowed = {"state", "startTime"} if version == "v1" else {"state"}
        unknown = set(body) - allowed
        if unknown:
            raise ApiError(400, f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"')
        state = _enum(body.get("state"), _FINDING_STATES, "state")
        if state == "STATE_UNSPECIFIED":
            raise ApiError(400, "state must be ACTIVE or INACTIVE")
        if version == "v1":
            if "startTime" not in body:
                raise ApiError(400, "start_time is required")
            try:
                parse_time(body["startTime"])
            except (TypeError, ValueError) as exc:
                raise ApiError(400, f"Invalid value at 'start_time': {exc}") from exc
        with self._lock:
            finding = self._finding_or_404(name)
            finding["state"] = state
            return dict(finding)


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def google_fake() -> Iterator[GoogleFake]:
    """A fresh :class:`GoogleFake`, serving on a free port for the duration of one test."""
    fake = GoogleFake().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def google_settings(google_fake: GoogleFake) -> Settings:
    """Settings with the SCC, Logging and GKE endpoints on :func:`google_fake` and anonymous credentials."""
    return google_fake.settings()
