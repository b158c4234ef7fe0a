"""The portal's catalogue read from OpenAPI documents: operations, parameters, bodies, local
references, and the bounds that keep a page finite."""

from __future__ import annotations

from typing import Any

from tokenward.services import catalogue
from tokenward.services.catalogue import Catalogue, catalogue_api


def api(document: dict[str, Any] | None, *, strip: bool = False) -> catalogue.CatalogueApi:
    return catalogue_api(
        name="pets",
        prefix="/pets-api",
        methods=["POST", "GET"],
        scopes=["pets:write", "pets:read"],
        audience="https://api.example",
        auth="bearer",
        strip_prefix=strip,
        document=document,
    )


# The OpenAPI 3.1 specification's own example shapes (petstore), trimmed.
PETSTORE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Swagger Petstore", "version": "1.0.0"},
    "paths": {
        "/pets": {
            "get": {
                "summary": "List all pets",
                "parameters": [{"$ref": "#/components/parameters/limit"}],
            },
            "post": {
                "summary": "Create a pet",
                "requestBody": {"$ref": "#/components/requestBodies/Pet"},
            },
        },
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "schema": {"type": "string"}}],
            "get": {
                "summary": "Info for a specific pet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "description": "own"}
                ],
            },
        },
    },
    "components": {
        "parameters": {"limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}},
        "requestBodies": {
            "Pet": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
            }
        },
        "schemas": {
            "Pet": {
                "type": "object",
                "properties": {"next": {"$ref": "#/components/schemas/Pet"}},  # recursive
            }
        },
    },
}


def test_a_route_without_a_document_lists_only_the_route() -> None:
    bare = api(None)
    assert bare.methods == ("GET", "POST")
    assert bare.scopes == ("pets:read", "pets:write")
    assert not bare.documented
    assert bare.operations == ()


def test_operations_parameters_and_bodies_with_references_followed() -> None:
    pets = api(PETSTORE)
    assert (pets.title, pets.version, pets.documented) == ("Swagger Petstore", "1.0.0", True)
    assert [(op.method, op.path) for op in pets.operations] == [
        ("GET", "/pets"),
        ("POST", "/pets"),
        ("GET", "/pets/{petId}"),
    ]
    listing, create, one = pets.operations
    assert [(p.name, p.location) for p in listing.parameters] == [("limit", "query")]
    assert create.body_required
    assert '"next"' in create.bodies[0].schema
    assert '"#/components/schemas/Pet"' in create.bodies[0].schema  # recursion stays named
    # The operation's own parameter replaces the path item's of the same name and place.
    assert [(p.name, p.description) for p in one.parameters] == [("petId", "own")]


def test_a_stripped_prefix_goes_in_front_of_the_documents_paths() -> None:
    assert api(PETSTORE, strip=True).operations[0].path == "/pets-api/pets"


def test_bounds_keep_the_page_finite(monkeypatch: Any) -> None:
    monkeypatch.setattr(catalogue, "MAX_OPERATIONS", 2)
    monkeypatch.setattr(catalogue, "MAX_SCHEMA_TEXT", 40)
    big = {
        **PETSTORE,
        "components": {
            **PETSTORE["components"],
            "schemas": {"Pet": {"type": "object", "description": "x" * 500}},
        },
    }
    pets = api(big)
    assert len(pets.operations) == 2
    assert len(pets.operations[1].bodies[0].schema) <= 42
    assert pets.operations[1].bodies[0].schema.endswith("…")


def test_references_outside_the_document_and_loops_are_not_followed() -> None:
    looping = {
        "openapi": "3.1.0",
        "paths": {
            "/a": {"$ref": "#/paths/~1b"},
            "/b": {"$ref": "#/paths/~1a"},
            "/c": {"get": {"requestBody": {"$ref": "https://elsewhere.example/body"}}},
        },
    }
    found = api(looping).operations
    assert [(op.method, op.path, op.bodies) for op in found] == [("GET", "/c", ())]


def test_malformed_pieces_are_skipped_not_fatal() -> None:
    odd = {
        "openapi": "3.1.0",
        "info": "not a mapping",
        "paths": {"/x": {"get": {"parameters": [3, {"in": "query"}], "summary": ["no"]}}},
    }
    (only,) = api(odd).operations
    assert only.parameters == ()
    assert only.summary == ""


def test_catalogue_names_and_scopes() -> None:
    found = Catalogue((api(None),))
    assert found.named("pets") is not None
    assert found.named("nothing") is None
    assert found.scopes == {"pets:read", "pets:write"}
