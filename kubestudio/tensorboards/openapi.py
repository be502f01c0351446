"""The TensorBoard service's API described as OpenAPI 3.0 (served at ``api/openapi.json``); the
tests run schemathesis against it on a live service (no request, however odd, gets a 5xx). The
boards themselves (``b/<id>/...``) are TensorBoard's own and not described here."""

from ..services.openapi import document, errors, ok
from .logdirs import MAX_LOGDIRS

BOARD = {"$ref": "#/components/schemas/Board"}
BOARD_ID = {
    "name": "board_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"},
    "description": "A board id.",
}
ERROR_WORDING = {
    "r404": "No such board (or it is someone else's), or no such folder.",
    "r409": "Too many boards open: the message lists them.",
}


def openapi(prefix):
    request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["logdirs"],
        "properties": {
            "logdirs": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_LOGDIRS},
                ],
                "description": "Folders relative to your workspace, or /mnt/<user>/... and /archives/<user>/... "
                "paths; several are compared in one board.",
            },
            "name": {"type": "string", "maxLength": 64},
            "project": {
                "type": "string",
                "description": "The project whose nodes run the board (Kubernetes; "
                "default public). You must be a member.",
            },
            "image": {"type": "string", "description": "TensorBoard's image (Kubernetes; one the admin allows)."},
            "resources": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "cpu": {"oneOf": [{"type": "number"}, {"type": "string"}]},
                    "memory": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                },
                "description": "CPU and memory of the board's pod (Kubernetes; within the admin's limits).",
            },
        },
    }
    board = {
        "type": "object",
        "required": ["id", "name", "owner", "status", "url"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "logdirs": {"type": "array", "items": {"type": "string"}},
            "options": {
                "type": "object",
                "description": "What was asked beside the folders (project, image, resources).",
            },
            "status": {"type": "string", "enum": ["starting", "running", "stopped", "failed"]},
            "message": {"type": "string"},
            "url": {"type": "string", "description": "The board, through the hub."},
            "created": {"type": "string"},
            "started": {"type": "string", "nullable": True},
            "last_activity": {"type": "string", "nullable": True},
        },
    }
    paths = {
        "/api/boards": {
            "get": {
                "summary": "Your boards, newest first",
                "parameters": [
                    {
                        "name": "user",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Admins: whose boards (a user name, or * for everyone's).",
                    }
                ],
                "responses": {
                    "200": ok({"type": "object", "properties": {"boards": {"type": "array", "items": BOARD}}}),
                    **errors(401, 403, **ERROR_WORDING),
                },
            },
            "post": {
                "summary": "Open a board (the same folders give the same board back, started again if stopped)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                "responses": {
                    "201": ok(BOARD, "A new board"),
                    "200": ok(BOARD, "The same board"),
                    **errors(400, 401, 403, 404, 409, 413, **ERROR_WORDING),
                },
            },
        },
        "/api/boards/{board_id}": {
            "parameters": [BOARD_ID],
            "get": {"summary": "One board", "responses": {"200": ok(BOARD), **errors(401, 403, 404, **ERROR_WORDING)}},
            "delete": {
                "summary": "Stop a board and forget it",
                "responses": {"204": {"description": "Stopped"}, **errors(401, 403, 404, **ERROR_WORDING)},
            },
        },
        "/api/boards/{board_id}/logs": {
            "parameters": [BOARD_ID],
            "get": {
                "summary": "TensorBoard's own output (its stderr)",
                "responses": {
                    "200": {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **errors(401, 403, 404, **ERROR_WORDING),
                },
            },
        },
    }
    return document(
        "KubeStudio TensorBoard service",
        "TensorBoard on any log folders of your workspace or archives, behind the hub's login, stopped "
        "when idle and started again when opened.",
        prefix,
        {"Board": board},
        paths,
    )
