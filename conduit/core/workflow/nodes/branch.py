"""if-else and list-operator: the conditions of `core/workflow/conditions.py` applied to the
pool (if-else chooses the edge of the first case that holds, else "false")."""

from __future__ import annotations

from conduit.core.workflow import list_ops
from conduit.core.workflow.conditions import Condition, ConditionError, check
from conduit.core.workflow.engine import NodeCall, NodeFailed, NodeResult
from conduit.core.workflow.variables import VariableNotFound, selector_of

ELSE = "false"


async def if_else(call: NodeCall) -> NodeResult:
    data = call.spec.data
    cases = data.get("cases")
    if cases is None:  # the oldest files: one case, its conditions on the node
        cases = [
            {
                "case_id": "true",
                "logical_operator": data.get("logical_operator", "and"),
                "conditions": data.get("conditions") or [],
            }
        ]
    chosen = ELSE
    results = []
    try:
        for case in cases:
            conditions = [Condition.from_dsl(item) for item in case.get("conditions") or ()]
            holds = check(
                conditions,
                str(case.get("logical_operator") or "and"),
                call.pool.get,
                call.pool.render,
            )
            results.append({"case_id": case.get("case_id"), "result": holds})
            if holds:
                chosen = str(case.get("case_id") or case.get("id") or "true")
                break
    except ConditionError as error:
        raise NodeFailed(error.message, error_type="ConditionError") from error
    return NodeResult(
        outputs={"result": chosen != ELSE, "selected_case_id": chosen},
        process_data={"condition_results": results},
        handles=(chosen,),
    )


async def list_operator(call: NodeCall) -> NodeResult:
    data = call.spec.data
    try:
        value = call.pool.get(selector_of(data.get("variable"), field="variable"))
    except (VariableNotFound, ValueError) as error:
        raise NodeFailed(f"The list operator's input is not set: {error}") from error
    try:
        outputs = list_ops.apply(data, value, call.pool.render)
    except ConditionError as error:
        raise NodeFailed(error.message, error_type="ConditionError") from error
    return NodeResult(outputs=outputs, inputs={"variable": value})
