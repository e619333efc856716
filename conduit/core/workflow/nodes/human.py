"""The human-input node (`core/workflow/human_input.py`): a form a person answers; the run
pauses until they do (or the form's time runs out)."""

from __future__ import annotations

from conduit.core.workflow.engine import NodeCall, NodeResult
from conduit.core.workflow.events import FormEvent
from conduit.core.workflow.human_input import (
    TIMEOUT_HANDLE,
    HumanInputSpec,
    NodePaused,
    new_form,
    outputs_of,
)
from conduit.core.workflow.services import WorkflowServices


async def human_input(call: NodeCall) -> NodeResult:
    spec = HumanInputSpec.parse(call.spec.data)  # checked when the graph was parsed
    services: WorkflowServices = call.run.services
    found = await services.form_of(call.spec.id)
    if found is None:
        # The first time the run reaches it: a new form, which the run waits on.
        raise NodePaused(
            new_form(
                spec,
                node_id=call.spec.id,
                node_title=call.spec.title,
                render=call.pool.render,
                find=call.pool.find,
            )
        )
    form, answer = found
    if answer is None:
        raise NodePaused(form)  # still unanswered (another form's answer resumed the run)
    outputs = outputs_of(form, answer)
    if answer.timed_out:
        call.emit(
            FormEvent(
                "human_input_form_timeout",
                {
                    "node_id": call.spec.id,
                    "node_title": call.spec.title,
                    "expiration_time": form.expiration_time,
                },
            )
        )
        return NodeResult(
            outputs={
                "__action_id": "",
                "__action_value": "",
                "__rendered_content": outputs["__rendered_content"],
            },
            handles=(TIMEOUT_HANDLE,),
        )
    call.emit(
        FormEvent(
            "human_input_form_filled",
            {
                "node_id": call.spec.id,
                "node_title": call.spec.title,
                "rendered_content": outputs["__rendered_content"],
                "action_id": answer.action_id,
                "action_text": outputs["__action_value"],
            },
        )
    )
    return NodeResult(
        outputs=outputs,
        inputs={"action": answer.action_id, "inputs": dict(answer.values)},
        handles=(answer.action_id,),
    )
