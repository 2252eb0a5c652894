"""How big a GraphQL query may be: tokens, aliases and depth (strawberry's extensions),
and its cost (``ComplexityLimiter``, below).

The cost is hand-written because no library did it right here, measured on
2026-12-06: strawberry ships no cost extension, and graphql-complexity 1.0.0
(the one on PyPI made for strawberry) counts a non-null list (``[Product!]!``,
every list strawberry makes) as one item instead of a page of them, and fails
with an AttributeError on any variable without a default value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql.validation import ValidationContext, ValidationRule
from strawberry.extensions import QueryDepthLimiter, SchemaExtension

MAX_TOKENS = 2000  # parsing stops there: a huge document costs no more than this
MAX_ALIASES = 15
# Fields with a selection set below one another. The schema has no cycles, so its
# deepest query is 4 deep (orders → items → lines → product); this leaves room to grow.
MAX_DEPTH = 6
MAX_PAGE_SIZE = 100  # what the services' pages hold
LINES_PER_ORDER = 50  # orders_svc accepts at most 50 lines
# A field costs 1 each time it may be resolved: under a page of 20 orders, an order's
# field costs 20, a line's 20 x 50. Queries a client needs stay well under the limit:
# a page of 20 orders with each line's quantity, price and product name costs 4,121;
# with `me` and four fields of each product, 7,103; a page of 20 products, 141.
MAX_COMPLEXITY = 10_000

# Lists that fan out without a pageSize argument: (type, field) -> how many at most.
_FAN_OUT = {("Order", "lines"): LINES_PER_ORDER}


def query_cost(
    schema: GraphQLSchema,
    document: Any,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> int:
    """The cost of the operation that will run (documents reach here validated)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    walk = _CostWalk(schema, fragments, variables or {})
    return walk.selections(operation.selection_set, root, 1, frozenset())


class _CostWalk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: Any,
        multiplier: int,
        fragments_seen: frozenset[str],
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, multiplier, fragments_seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                kind = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, kind, multiplier, fragments_seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in fragments_seen:
                    continue
                kind = self.schema.get_type(fragment.type_condition.name.value)
                total += self.selections(
                    fragment.selection_set, kind, multiplier, fragments_seen | {name}
                )
        return total

    def field(
        self, node: FieldNode, parent: Any, multiplier: int, fragments_seen: frozenset[str]
    ) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType):
            return 0  # introspection: bounded by the token and depth limits
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        cost = multiplier
        if node.selection_set is not None:
            fan_out = self.fan_out(parent.name, name, node, definition)
            cost += self.selections(
                node.selection_set,
                get_named_type(definition.type),
                multiplier * fan_out,
                fragments_seen,
            )
        return cost

    def fan_out(self, type_name: str, name: str, node: FieldNode, definition: Any) -> int:
        """How many of what this field holds may come back: its page size, or a known bound."""
        page_size = definition.args.get("pageSize")
        if page_size is None:
            return _FAN_OUT.get((type_name, name), 1)
        value: Any = page_size.default_value
        for argument in node.arguments or ():
            if argument.name.value != "pageSize":
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value, value)
        if not isinstance(value, int) or isinstance(value, bool):
            return MAX_PAGE_SIZE
        # Out of range is refused by the resolver, with a clearer message than a cost.
        return max(1, min(value, MAX_PAGE_SIZE))


class DepthLimiter(QueryDepthLimiter):
    """strawberry's depth limit, minus its failure on a spread of an unknown fragment.

    Its rule looks fragments up while it is built and raises KeyError for one the
    document does not define (``{ ...Missing }``), which turned a client's mistake
    into an internal error; graphql-core's own rule reports that fragment instead.
    """

    def __init__(self, max_depth: int) -> None:
        super().__init__(max_depth=max_depth)
        self.validation_rules = [_tolerant(rule) for rule in self.validation_rules]


def _tolerant(rule: type[ValidationRule]) -> type[ValidationRule]:
    class Tolerant(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            try:
                super().__init__(context)
            except KeyError:  # an unknown fragment: KnownFragmentNamesRule says so
                ValidationRule.__init__(self, context)

    return Tolerant


class ComplexityLimiter(SchemaExtension):
    """Refuses an operation whose cost is above ``MAX_COMPLEXITY`` before anything runs.

    At execution rather than validation: the page sizes in variables are known then.
    """

    def on_execute(self) -> Iterator[None]:
        from graphql_api.errors import GraphQLProblem

        context = self.execution_context
        cost = query_cost(
            context.schema._schema,  # graphql-core's, as strawberry's extensions read it
            context.graphql_document,
            context.operation_name,
            context.variables,
        )
        if cost > MAX_COMPLEXITY:
            context.result = ExecutionResult(
                data=None,
                errors=[
                    GraphQLProblem(
                        f"The query costs {cost}; at most {MAX_COMPLEXITY} is allowed. Ask for "
                        "smaller pages (pageSize) or fewer fields.",
                        status=400,
                        code="query_too_complex",
                        cost=cost,
                        max_cost=MAX_COMPLEXITY,
                    )
                ],
            )
        yield
