"""The OpenAPI 3.0 document of the `/v1` Images API, served at `GET /v1/openapi.json`.

Written by hand from `demo.api` (its routes are plain Starlette handlers, which FastAPI cannot
describe): the limits come from the same constants. `tests/test_api_fuzz.py` fuzzes the server
from this document, and checks that every answer is one it declares.
"""
from __future__ import annotations

from typing import Any

from .api import (
    DEFAULT_SIZE,
    MAX_IMAGE_BYTES,
    MAX_N,
    MAX_PROMPT_CHARS,
    MODEL_ID,
    RESPONSE_FORMATS,
    SIZES,
)


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _images_responses() -> dict[str, Any]:
    return {
        "200": {"description": "The images, best first",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImagesResponse"}}}},
        "400": _error("Bad input: the message says which field and why"),
        "401": _error("Missing or wrong API key"),
        "413": _error(f"An upload over {MAX_IMAGE_BYTES // 2**20} MB"),
        "429": _error("The model is busy: retry after the Retry-After header's seconds"),
    }


def _common_fields() -> dict[str, Any]:
    return {
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS,
                   "description": "What to draw, in the shapes world's words"},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 1},
        "size": {"type": "string", "enum": list(SIZES), "default": DEFAULT_SIZE,
                 "description": "64x64 is the model's own; larger sizes are enlarged with square pixels"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "url"},
        "model": {"type": "string", "description": "Ignored: there is one model"},
        "user": {"type": "string", "description": "Ignored"},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the `/v1` routes (paths are absolute: the server's root is the base URL)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Laptop DALL·E Images API", "version": "1",
                 "description": "OpenAI-compatible image generation and editing; see demo/README.md."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/images/generations": {"post": {
                "operationId": "createImage",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["prompt"], "properties": _common_fields()}}}},
                "responses": _images_responses(),
            }},
            "/v1/images/edits": {"post": {
                "operationId": "createImageEdit",
                "description": "The mask's fully transparent pixels (alpha 0) mark what to redraw; without a mask, "
                               "the image's own transparency does.",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["image", "prompt"],
                    "properties": {"image": {"type": "string", "format": "binary"},
                                   "mask": {"type": "string", "format": "binary"}, **_common_fields()}}}}},
                "responses": _images_responses(),
            }},
            "/v1/models": {"get": {
                "operationId": "listModels",
                "responses": {
                    "200": {"description": "The one model served",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}},
                    "401": _error("Missing or wrong API key"),
                },
            }},
            "/v1/files/{file_id}.png": {"get": {
                "operationId": "getImageFile",
                "description": "An image returned earlier as `url`. Its random id is its only key: no API key.",
                "security": [],
                "parameters": [{"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The PNG",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": _error("Unknown or expired"),
                },
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type", "param", "code"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                   "param": {"type": "string", "nullable": True},
                                   "code": {"type": "string", "nullable": True}}}}},
                "ImagesResponse": {"type": "object", "required": ["created", "data"], "properties": {
                    "created": {"type": "integer"},
                    "data": {"type": "array", "minItems": 1, "maxItems": MAX_N, "items": {
                        "type": "object", "properties": {"url": {"type": "string"}, "b64_json": {"type": "string"}}}},
                }},
                "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
                    "object": {"type": "string", "enum": ["list"]},
                    "data": {"type": "array", "items": {"type": "object", "required": ["id", "object"], "properties": {
                        "id": {"type": "string", "enum": [MODEL_ID]}, "object": {"type": "string"},
                        "created": {"type": "integer"}, "owned_by": {"type": "string"}}}},
                }},
            },
        },
    }
