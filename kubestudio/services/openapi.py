"""Pieces of every service's OpenAPI 3.0 document (served at ``api/openapi.json``): the error
body, the token security scheme, and the responses every operation shares."""

ERROR = {"$ref": "#/components/schemas/Error"}
REASONS = {
    400: "A field is wrong; the message names it.",
    401: "Not logged in.",
    403: "Not allowed (the message names the scope or the rule).",
    404: "Not found (or it is someone else's).",
    409: "Conflicts with the current state.",
    413: "Too large.",
    502: "Something the service depends on failed.",
}


def errors(*codes, **reasons):
    """Error responses for ``codes``; ``reasons`` (e.g. ``r404="No such build"``) word them."""
    return {
        str(code): {
            "description": reasons.get(f"r{code}", REASONS[code]),
            "content": {"application/json": {"schema": ERROR}},
        }
        for code in codes
    }


def ok(schema, description="OK"):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def text_or_events(description):
    """A log: plain text, or Server-Sent Events with ``Accept: text/event-stream``."""
    return {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}, "text/event-stream": {"schema": {"type": "string"}}},
    }


def document(title, description, prefix, schemas, paths):
    """The whole document; ``/api/health`` and ``/api/openapi.json`` (no login) are added."""
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1", "description": description},
        "servers": [{"url": prefix.rstrip("/")}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <JupyterHub API token>'",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                },
                **schemas,
            },
        },
        "paths": {
            **paths,
            "/api/health": {
                "get": {"summary": "Liveness", "security": [], "responses": {"200": ok({"type": "object"})}}
            },
            "/api/openapi.json": {
                "get": {"summary": "This document", "security": [], "responses": {"200": ok({"type": "object"})}}
            },
        },
    }
