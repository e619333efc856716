"""Workflow runs again with the `celery` executor: the run's spec (its published graph, inputs
and model refs) goes through the outbox and the `generation` queue, and the engine runs in the
worker (a thread in the embedded mode, a `conduit worker` process in the distributed mode);
stop reaches it through the stop registry."""

from tests.e2e.test_workflow_runs import (
    branching,
    parallel,
    test_a_blocking_run_answers_dify_s_shape_with_every_output,
    test_a_failing_node_fails_the_run_with_http_200_and_its_error,
    test_a_run_is_read_back_and_its_events_replayed,
    test_a_stream_reports_each_node_and_the_parallel_branches_overlap,
    test_stop_cancels_the_running_nodes_and_ends_the_run_stopped,
)

EXECUTOR = "celery"

__all__ = [
    "branching",
    "parallel",
    "test_a_blocking_run_answers_dify_s_shape_with_every_output",
    "test_a_failing_node_fails_the_run_with_http_200_and_its_error",
    "test_a_run_is_read_back_and_its_events_replayed",
    "test_a_stream_reports_each_node_and_the_parallel_branches_overlap",
    "test_stop_cancels_the_running_nodes_and_ends_the_run_stopped",
]
