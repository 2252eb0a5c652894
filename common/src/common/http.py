"""Conditional GET: strong ETags computed from a representation."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.http import parse_etags
from rest_framework.request import Request


def etag_for(data: Any) -> str:
    """A strong ETag for what a client would receive: it changes when any field does."""
    body = json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def client_has_current(request: Request, etag: str) -> bool:
    """True when ``If-None-Match`` names this ETag (weak or strong) or ``*``: answer 304."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = parse_etags(header)
    # If-None-Match uses weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
    return "*" in candidates or etag in candidates or f"W/{etag}" in candidates
