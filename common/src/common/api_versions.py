"""Versions of the public REST API: a ``version`` parameter of the Accept media type.

``Accept: application/json; version=1`` asks for version 1; no parameter means
version 1 too, so clients written before there were versions (API.md) keep
working on the same paths (docs/API-VERSIONING.md says why media type rather
than path, and what makes a change breaking). A version this API does not have
is refused with 406 problem details, by each service (common.versioning,
DRF's ``DEFAULT_VERSIONING_CLASS``) and by the gateway at its edge, for the answers it
makes itself (the composition, the push channel).
"""

from __future__ import annotations

from rest_framework.utils.mediatypes import _MediaType

VERSION_PARAM = "version"
DEFAULT_VERSION = "1"
# Every version served at once; a new one is added here, the old one stays until retired.
API_VERSIONS = ("1",)

VERSIONING_DESCRIPTION = (
    "Versioned by media type: send `Accept: application/json; version=1` (no `version` "
    "parameter means 1). A version this API does not have is refused with 406 "
    "(`unknown_api_version`)."
)
# The OpenAPI documents' ``info.x-api-versioning`` (OpenAPI ignores an Accept parameter).
OPENAPI_VERSIONING = {
    "scheme": "media-type",
    "header": "Accept",
    "parameter": VERSION_PARAM,
    "default": DEFAULT_VERSION,
    "versions": list(API_VERSIONS),
}


def unknown_version_detail(version: str) -> str:
    return f"Accept asks for version {version!r}; this API has {', '.join(API_VERSIONS)}."


def accept_versions(accept: str) -> list[str]:
    """The ``version`` parameters the Accept header's media ranges name, in order."""
    versions = []
    for media_range in accept.split(","):
        if not media_range.strip():
            continue
        version = _MediaType(media_range.strip()).params.get(VERSION_PARAM)
        if version is not None:
            versions.append(version.strip('"'))
    return versions


def accept_unknown_version(accept: str) -> str | None:
    """The version to refuse, when the Accept header names versions and none is served."""
    versions = accept_versions(accept)
    if versions and not any(version in API_VERSIONS for version in versions):
        return versions[0]
    return None
