"""The image service's API described as OpenAPI 3.0 (served at ``api/openapi.json``).

Written from the handlers and the request grammar in :mod:`.spec`; ``tests/image_builder`` runs
schemathesis against it on a live service and checks that no request, however odd, gets a 5xx.
"""

from ..services.openapi import document, errors, ok, text_or_events
from .spec import KINDS, MAX_DOCKERFILE

BUILD = {"$ref": "#/components/schemas/Build"}
BUILD_ID = {
    "name": "build_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"},
    "description": "A build id.",
}
USER_FILTER = {
    "name": "user",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Admins: whose builds (a user name, or * for everyone's). Default: your own.",
}
ERROR_WORDING = {
    "r403": "Not allowed (the message names the scope or the Dockerfile line).",
    "r404": "No such build or image (or it is someone else's).",
    "r413": "Too large (body, Dockerfile or build context).",
    "r502": "The registry or a server failed.",
}


def _errors(*codes):
    return errors(*codes, **ERROR_WORDING)


def openapi(prefix):
    """The OpenAPI document; ``prefix`` is the service's URL prefix (``/services/images/``)."""
    labels = {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 4096},
        "description": "Image labels (keys under kubestudio.io/ are the service's own).",
    }
    packages = {"type": "array", "items": {"type": "string", "maxLength": 200}}
    request = {
        "type": "object",
        "additionalProperties": False,
        "description": f"Exactly one of {', '.join(KINDS)}.",
        "properties": {
            "context": {"type": "string", "description": "A folder of your workspace holding the Dockerfile."},
            "dockerfile": {"type": "string", "description": "The Dockerfile's path in the context (context only)."},
            "dockerfile_text": {"type": "string", "maxLength": MAX_DOCKERFILE, "description": "A Dockerfile."},
            "environment": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"base": {"type": "string"}, "pip": packages, "apt": packages, "conda": packages},
            },
            "from_server": {
                "oneOf": [{"type": "string"}, {"type": "boolean"}],
                "description": "One of your running servers ('' or true: the default one).",
            },
            "base": {"type": "string", "description": "from_server only: the image to add the packages to."},
            "name": {"type": "string", "maxLength": 128},
            "tag": {"type": "string", "maxLength": 128, "description": "Default: the content hash."},
            "project": {"type": "string"},
            "repository": {"type": "string", "description": "Admins only: push here."},
            "labels": labels,
        },
    }
    build = {
        "type": "object",
        "required": ["id", "owner", "kind", "status", "image", "tag"],
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "name": {"type": "string"},
            "tag": {"type": "string"},
            "image": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["queued", "running", "succeeded", "failed", "cancelled", "exists", "deleted"],
            },
            "message": {"type": "string"},
            "backend": {"type": "string"},
            "builder_run": {"type": "boolean"},
            "steps": {"type": "integer"},
            "step": {"type": "integer"},
            "digest": {"type": "string", "nullable": True},
            "size": {"type": "integer", "nullable": True},
            "created": {"type": "string"},
            "started": {"type": "string", "nullable": True},
            "finished": {"type": "string", "nullable": True},
            "queue_position": {"type": "integer", "nullable": True},
            "joined": {"type": "boolean", "description": "An identical build was already in flight: this is it."},
        },
    }
    paths = {
        "/api/builds": {
            "get": {
                "summary": "Your builds, newest first",
                "parameters": [USER_FILTER],
                "responses": {
                    "200": ok({"type": "object", "properties": {"builds": {"type": "array", "items": BUILD}}}),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Build an image (or answer that it exists, or join the identical build)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BuildRequest"}}},
                },
                "responses": {
                    "202": ok(BUILD, "Queued"),
                    "200": ok(BUILD, "Exists or joined"),
                    **_errors(400, 401, 403, 404, 409, 413, 502),
                },
            },
        },
        "/api/builds/{build_id}": {
            "parameters": [BUILD_ID],
            "get": {"summary": "One build", "responses": {"200": ok(BUILD), **_errors(401, 403, 404)}},
            "delete": {"summary": "Cancel a build", "responses": {"200": ok(BUILD), **_errors(401, 403, 404, 409)}},
        },
        "/api/builds/{build_id}/logs": {
            "parameters": [BUILD_ID],
            "get": {
                "summary": "The build's log: plain text, or Server-Sent Events with Accept: text/event-stream",
                "responses": {"200": text_or_events("The log"), **_errors(401, 403, 404)},
            },
        },
        "/api/images": {
            "get": {
                "summary": "Your images (the newest build of each tag)",
                "parameters": [USER_FILTER],
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403)},
            },
            "delete": {
                "summary": "Delete one of your images from the registry",
                "parameters": [{"name": "image", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": ok({"type": "object"}), **_errors(400, 401, 403, 404, 502)},
            },
        },
        "/api/bases": {
            "get": {
                "summary": "Base images the service makes itself",
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403)},
            }
        },
        "/api/servers": {
            "get": {
                "summary": "Your servers and what a from_server build of each would add",
                "responses": {"200": ok({"type": "object"}), **_errors(401, 403, 502)},
            }
        },
    }
    return document(
        "KubeStudio image service",
        "Build container images from a workspace folder, a Dockerfile, a package list or a running "
        "server; follow their logs; list and delete your images.",
        prefix,
        {"BuildRequest": request, "Build": build},
        paths,
    )
