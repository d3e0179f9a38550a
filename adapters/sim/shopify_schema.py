"""The GraphQL schema the Shopify stand-in executes against.

Preferred: the official Admin API 2025-01 introspection in `../shared/specs/shopify/` (loaded with
graphql-core 3.2 `build_client_schema`). Where that folder is absent (an installed package, a
container), the stand-in falls back to `shopify_schema_2025-01.graphql` shipped beside this module:
the same schema pruned to the types and fields the adapter's operations touch, generated from the
official file by `generate_minimal_sdl` (a test keeps the shipped copy equal to a fresh generation).

2026-01 is the 2025-01 schema plus the deltas in `admin_2026-01_excerpts.graphql`: the @idempotent
directive and orderCancel(refundMethod:). Only those deltas matter to the adapter.
"""
from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path
from typing import Iterable

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    ast_from_value,
    build_client_schema,
    build_schema,
    extend_schema,
    get_named_type,
    parse,
    print_ast,
    visit,
)
from graphql.pyutils import Undefined

HERE = Path(__file__).resolve().parent
MINIMAL_SDL_PATH = HERE / "shopify_schema_2025-01.graphql"
SCHEMA_FILE_NAME = "admin_schema_2025-01.json.gz"
# The project's convention: the specs folder sits beside the project root (../shared/specs).
DEFAULT_SPECS_DIR = HERE.parent.parent.parent / "shared" / "specs"

DELTA_2026_01 = """
directive @idempotent(key: String!) on FIELD
input OrderCancelStoreCreditRefundInput { expiresAt: DateTime }
input OrderCancelRefundMethodInput {
  originalPaymentMethodsRefund: Boolean
  storeCreditRefund: OrderCancelStoreCreditRefundInput
}
"""

_cache: dict[tuple[str, str], GraphQLSchema] = {}
_cache_lock = threading.Lock()


def specs_schema_path(specs_dir: Path | str | None = None) -> Path:
    base = Path(specs_dir or os.environ.get("ORDERSYNC_SPECS_DIR") or DEFAULT_SPECS_DIR)
    return base / "shopify" / SCHEMA_FILE_NAME


def load_official_schema(path: Path) -> GraphQLSchema:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return build_client_schema(data.get("data", data))


def load_schema(version: str = "2025-01", specs_dir: Path | str | None = None, *, prefer: str = "auto") -> GraphQLSchema:
    """The schema for `version` ("2025-01" or "2026-01"). prefer: "auto", "official" or "minimal"."""
    path = specs_schema_path(specs_dir)
    source = prefer
    if prefer == "auto":
        source = "official" if path.is_file() else "minimal"
    key = (f"{source}:{path if source == 'official' else MINIMAL_SDL_PATH}", version)
    with _cache_lock:
        if key not in _cache:
            base = load_official_schema(path) if source == "official" else build_schema(MINIMAL_SDL_PATH.read_text("utf-8"))
            _cache[key] = with_2026_01_forms(base) if version >= "2026-01" else base
        return _cache[key]


def schema_source(specs_dir: Path | str | None = None) -> str:
    return str(specs_schema_path(specs_dir)) if specs_schema_path(specs_dir).is_file() else str(MINIMAL_SDL_PATH)


def with_2026_01_forms(schema: GraphQLSchema) -> GraphQLSchema:
    """A new schema: `schema` plus @idempotent and orderCancel(refundMethod:), with `refund` optional."""
    extended = extend_schema(schema, parse(DELTA_2026_01))
    mutation = extended.mutation_type
    assert mutation is not None
    cancel = mutation.fields["orderCancel"]
    args = dict(cancel.args)
    # Deprecated since 2025-07 and absent from the printed 2026-01 SDL, but still accepted.
    args["refund"] = GraphQLArgument(GraphQLBoolean, deprecation_reason="Use `refundMethod` instead.")
    refund_method = extended.get_type("OrderCancelRefundMethodInput")
    assert isinstance(refund_method, GraphQLInputObjectType)
    args["refundMethod"] = GraphQLArgument(refund_method)
    cancel.args = args
    return extended


# -- generating the minimal fallback -------------------------------------------------------------------
def generate_minimal_sdl(schema: GraphQLSchema, documents: Iterable[str]) -> str:
    """SDL of `schema` cut down to what `documents` select (plus every input type their arguments reach)."""
    used_fields: dict[str, set[str]] = {}
    named: set[str] = set()

    for text in documents:
        type_info = TypeInfo(schema)
        document = parse(text)

        class Collect(Visitor):
            def enter_field(self, node, *_):
                parent = type_info.get_parent_type()
                if parent is not None and not node.name.value.startswith("__"):
                    used_fields.setdefault(parent.name, set()).add(node.name.value)
                    named.add(parent.name)
                field_type = type_info.get_type()
                if field_type is not None:
                    named.add(get_named_type(field_type).name)

            def enter_variable_definition(self, node, *_):
                type_name = node.type
                while hasattr(type_name, "type"):
                    type_name = type_name.type
                named.add(type_name.name.value)

            def enter_inline_fragment(self, node, *_):
                if node.type_condition is not None:
                    named.add(node.type_condition.name.value)

            def enter_fragment_definition(self, node, *_):
                named.add(node.type_condition.name.value)

        visit(document, TypeInfoVisitor(type_info, Collect()))

    # Arguments of used fields bring their input types, recursively.
    pending = list(named)
    for type_name, fields in used_fields.items():
        parent = schema.get_type(type_name)
        for field_name in fields:
            for arg in parent.fields[field_name].args.values():  # type: ignore[union-attr]
                pending.append(get_named_type(arg.type).name)
    while pending:
        name = pending.pop()
        named.add(name)
        graphql_type = schema.get_type(name)
        if isinstance(graphql_type, GraphQLInputObjectType):
            for field in graphql_type.fields.values():
                inner = get_named_type(field.type).name
                if inner not in named:
                    pending.append(inner)

    # An interface kept must have its fields on every kept implementation (they are `id` here).
    for name in list(named):
        graphql_type = schema.get_type(name)
        if isinstance(graphql_type, GraphQLInterfaceType):
            for impl in schema.get_possible_types(graphql_type):
                if impl.name in named:
                    used_fields.setdefault(impl.name, set()).update(used_fields.get(name, set()))

    builtin = {"String", "Int", "Float", "Boolean", "ID"}
    lines: list[str] = [
        "# Generated by adapters.sim.shopify_schema.generate_minimal_sdl from the Shopify Admin API 2025-01",
        "# introspection (../shared/specs/shopify/admin_schema_2025-01.json.gz). Do not edit by hand.",
        "",
        f"schema {{ query: {schema.query_type.name} mutation: {schema.mutation_type.name} }}",  # type: ignore[union-attr]
        "",
    ]
    for name in sorted(named - builtin):
        lines.append(_print_type(schema.get_type(name), used_fields.get(name, set()), named))
        lines.append("")
    return "\n".join(lines)


def _print_args(args: dict) -> str:
    if not args:
        return ""
    parts = []
    for arg_name, arg in args.items():
        text = f"{arg_name}: {arg.type}"
        if arg.default_value is not Undefined:
            default = ast_from_value(arg.default_value, arg.type)
            if default is not None:
                text += f" = {print_ast(default)}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def _print_type(graphql_type: GraphQLNamedType | None, fields: set[str], named: set[str]) -> str:
    if isinstance(graphql_type, GraphQLScalarType):
        return f"scalar {graphql_type.name}"
    if isinstance(graphql_type, GraphQLEnumType):
        return f"enum {graphql_type.name} {{ " + " ".join(graphql_type.values) + " }"
    if isinstance(graphql_type, GraphQLInputObjectType):
        body = "\n".join(f"  {name}{_print_args({})}: {field.type}" for name, field in graphql_type.fields.items())
        return f"input {graphql_type.name} {{\n{body}\n}}"
    if isinstance(graphql_type, GraphQLUnionType):
        members = [t.name for t in graphql_type.types if t.name in named]
        return f"union {graphql_type.name} = " + " | ".join(members)
    if isinstance(graphql_type, (GraphQLObjectType, GraphQLInterfaceType)):
        keyword = "type" if isinstance(graphql_type, GraphQLObjectType) else "interface"
        interfaces = [i.name for i in graphql_type.interfaces if i.name in named]
        implements = f" implements {' & '.join(interfaces)}" if interfaces else ""
        body = "\n".join(
            f"  {name}{_print_args(field.args)}: {field.type}"
            for name, field in graphql_type.fields.items()
            if name in fields
        )
        return f"{keyword} {graphql_type.name}{implements} {{\n{body}\n}}"
    raise TypeError(f"cannot print {graphql_type!r}")


def main() -> None:
    """Regenerate the shipped fallback: python -m adapters.sim.shopify_schema"""
    from adapters.shopify.operations import OPERATIONS

    schema = load_official_schema(specs_schema_path())
    MINIMAL_SDL_PATH.write_text(generate_minimal_sdl(schema, OPERATIONS["2025-01"].all().values()), "utf-8")
    print(f"wrote {MINIMAL_SDL_PATH}")


if __name__ == "__main__":
    main()
