"""Plain HTTPS requests to a local API server as its admin, for tests that send hundreds.

kubectl costs a process per request; this keeps one connection open. Answers come
back as they are: status code, body and the server's warnings, refusals included.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from localcluster import LocalCluster


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class Rest:
    def __init__(self, cluster: LocalCluster) -> None:
        pki = cluster.state_dir / "pki"
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        parsed = urllib.parse.urlsplit(cluster.server)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self._conn: http.client.HTTPSConnection | None = None

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, **query: str
    ) -> Answer:
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in (1, 2):  # a kept-alive connection the server closed: open anew once
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=30
                )
            try:
                self._conn.request(method, url, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                continue
            warnings = [_warning(v) for k, v in resp.getheaders() if k.lower() == "warning"]
            doc = json.loads(raw) if raw else {}
            return Answer(resp.status, doc if isinstance(doc, dict) else {}, warnings)
        raise AssertionError("unreachable")

    def create_service(self, namespace: str, body: dict[str, Any], dry_run: bool = False) -> Answer:
        query = {"dryRun": "All"} if dry_run else {}
        return self.request("POST", f"/api/v1/namespaces/{namespace}/services", body, **query)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _warning(header: str) -> str:
    """The text of one RFC 7234 Warning header as the API server sends it: 299 - "text"."""
    code, _, rest = header.partition(" ")
    _, _, quoted = rest.partition(" ")
    text = quoted.strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text if code == "299" else header
