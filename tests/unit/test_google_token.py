"""The token before the isolating writes (responder/adapters/google_token.py): asked of a metadata server on this
machine's loopback, as Cloud Functions' is asked, and chosen only where Application Default Credentials would end
there; and the GKE lookup presenting it, refreshing once when it is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from responder.adapters.gke import GkeClusterAPI
from responder.adapters.google_token import AdcToken, MetadataToken, metadata_is_adc, token_source
from responder.config import Settings
from responder.errors import Forbidden, TransientError, Unavailable
from responder.intake.identifiers import ClusterRef

ROOT = Path(__file__).resolve().parents[2]


class Metadata:
    """The metadata server's token endpoint: answers in turn from ``answers`` (status, body), then the last one."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = [(200, {"access_token": "tok-1", "expires_in": 3599})]
        self.seen: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Metadata-Flavor")))
                status, body = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    server = Metadata()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_the_token_is_one_get_with_the_metadata_header_and_is_cached(metadata: Metadata) -> None:
    source = MetadataToken(metadata.host)
    token, expiry = source.token()
    assert token == "tok-1" and expiry > 0
    assert source.token()[0] == "tok-1" and len(metadata.seen) == 1  # cached until it nears expiry
    path, flavor = metadata.seen[0]
    assert path.startswith("/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2F")
    assert flavor == "Google"
    metadata.answers = [(200, {"access_token": "tok-2", "expires_in": 3599})]
    assert source.token(fresh=True)[0] == "tok-2"  # refused: a fresh one


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {}, Unavailable),  # no service account on this instance: no retry mends it
        (503, {}, TransientError),
        (200, b"not json", TransientError),
        (200, {"access_token": "", "expires_in": 10}, TransientError),
    ],
)
def test_a_failed_fetch_is_a_clear_error(metadata: Metadata, status: int, body: Any, error: type[Exception]) -> None:
    metadata.answers = [(status, body)]
    with pytest.raises(error, match="metadata server token"):
        MetadataToken(metadata.host).token()


def test_an_unreachable_metadata_server_is_transient() -> None:
    with pytest.raises(TransientError, match="metadata server token"):
        MetadataToken("127.0.0.1:9").token()  # discard port: refused


def test_the_metadata_server_only_where_adc_would_end_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    assert not metadata_is_adc(None)  # a laptop: google-auth finds whatever it finds
    assert isinstance(token_source(None), AdcToken)
    assert metadata_is_adc("responder-fn")  # Cloud Functions / Cloud Run
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")
    assert isinstance(token_source(None), MetadataToken)
    assert isinstance(token_source(None, credentials=object()), AdcToken)  # credentials given: used
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert not metadata_is_adc("responder-fn")  # gcloud's ADC file comes first, for google-auth too
    (tmp_path / "application_default_credentials.json").unlink()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    assert not metadata_is_adc("responder-fn")


def test_the_gke_lookup_refreshes_a_refused_token_once(metadata: Metadata, google_fake: Any) -> None:
    ref = ClusterRef("demo-project", "us-central1", "prod")
    google_fake.add_cluster(ref.path)
    settings = Settings(container_endpoint=google_fake.url)
    metadata.answers = [
        (200, {"access_token": "stale", "expires_in": 3599}),
        (200, {"access_token": "fresh", "expires_in": 3599}),
    ]
    api = GkeClusterAPI(settings, deadline_s=0, token=MetadataToken(metadata.host))
    google_fake.fail_next(1, status=401)
    assert api.get_cluster(ref).name == "prod"
    sent = [r.headers.get("authorization") for r in google_fake.requests if "/clusters/" in r.path]
    assert sent == ["Bearer stale", "Bearer fresh"]
    google_fake.fail_next(2, status=401)
    with pytest.raises(Forbidden):  # refused twice: the token is not the problem
        api.get_cluster(ref)


def test_the_path_to_the_first_write_imports_neither_requests_nor_google_auth() -> None:
    """What the cold path loads before its writes on the GKE path (bootstrap, the connector, the lookup)."""
    probe = (
        "import sys, main, responder.handler, responder.bootstrap, responder.adapters.gke, "
        "responder.adapters.kube_connect, responder.adapters.google_token; "
        "print(sorted(m for m in ('requests', 'google.auth', 'cryptography') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
