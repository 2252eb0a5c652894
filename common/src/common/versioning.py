"""DRF's side of the public REST API's versions (see common.api_versions): each service
refuses, with 406 problem details, a version it does not have."""

from __future__ import annotations

from rest_framework import status
from rest_framework.request import Request
from rest_framework.utils.mediatypes import _MediaType
from rest_framework.versioning import AcceptHeaderVersioning

from common.api_versions import API_VERSIONS, DEFAULT_VERSION, VERSION_PARAM, unknown_version_detail
from common.problems import DomainError


class UnknownApiVersion(DomainError):
    code = "unknown_api_version"
    status = status.HTTP_406_NOT_ACCEPTABLE
    title = "This API has no such version."


class MediaTypeVersioning(AcceptHeaderVersioning):
    """DRF's Accept-header versioning, refusing with our problem code (406)."""

    default_version = DEFAULT_VERSION
    allowed_versions = API_VERSIONS
    version_param = VERSION_PARAM

    def determine_version(self, request: Request, *args: object, **kwargs: object) -> str:
        media_type = _MediaType(request.accepted_media_type)
        version = media_type.params.get(self.version_param, self.default_version)
        if isinstance(version, bytes):
            version = version.decode("latin-1")
        version = version.strip('"')
        if version not in self.allowed_versions:
            raise UnknownApiVersion(unknown_version_detail(version))
        return version
