"""Shopify's calculated query cost, estimated from the operation text alone.

The client uses it to know how many bucket points to wait for before sending; the stand-in uses the
same function to decide what to charge, so the two agree by construction. The rules follow
shopify.dev's description (FACTS.md §2): scalars and enums 0, an object 1, a connection
2 + first × (cost of one node), a mutation 10. Shopify's real figures differ in detail; what matters
is that a caller can read the requested cost before sending and that it grows with `first`.
"""
from __future__ import annotations

from typing import Any, Mapping

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    value_from_ast_untyped,
)

MUTATION_COST = 10
# A list field without `first` (e.g. fulfillmentHolds) is charged as if it held this many items.
UNBOUNDED_LIST_GUESS = 1


def requested_cost(
    query: str | DocumentNode, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
) -> int:
    document = parse(query) if isinstance(query, str) else query
    operation = _pick_operation(document, operation_name)
    values = _variable_values(operation, variables or {})
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation.operation.value == "mutation":
        return MUTATION_COST * max(1, len(operation.selection_set.selections))
    return _selection_cost(operation.selection_set, values, fragments)


def _pick_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        if name is None or (operation.name and operation.name.value == name):
            return operation
    raise ValueError(f"operation {name!r} not found in the document")


def _variable_values(operation: OperationDefinitionNode, given: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name in given:
            values[name] = given[name]
        elif definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


def _fields(selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    found: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                found.extend(_fields(fragment.selection_set, fragments))
    return found


def _first(field: FieldNode, values: dict[str, Any]) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value in ("first", "last"):
            value = value_from_ast_untyped(argument.value, values)
            return int(value) if isinstance(value, int) else None
    return None


def _selection_cost(selection_set: SelectionSetNode | None, values: dict[str, Any], fragments: dict) -> int:
    total = 0
    for field in _fields(selection_set, fragments):
        if field.selection_set is None or field.name.value in ("pageInfo", "__typename"):
            continue
        children = _fields(field.selection_set, fragments)
        child_names = {child.name.value for child in children}
        first = _first(field, values)
        if child_names & {"nodes", "edges"}:
            per_node = max(
                # a node object costs 1; under `edges` the `node` field is that object
                _selection_cost(child.selection_set, values, fragments) + (1 if child.name.value == "nodes" else 0)
                for child in children
                if child.name.value in ("nodes", "edges")
            )
            total += 2 + (first if first is not None else UNBOUNDED_LIST_GUESS) * per_node
        elif first is not None:
            total += first * (1 + _selection_cost(field.selection_set, values, fragments))
        else:
            total += 1 + _selection_cost(field.selection_set, values, fragments)
    return total
