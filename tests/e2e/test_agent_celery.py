"""Agent runs again with the `celery` executor: the rounds and the tools run where the run
does (a worker thread in the embedded mode, a `conduit worker` process in the distributed
mode), the agent's plan carried in the run's body through the queue."""

from tests.e2e.test_agent import (
    make_agent,
    test_an_agent_calls_a_tool_and_answers_with_its_result,
    test_blocking_is_refused_and_async_gives_the_agents_answer,
    test_react_strategy_reads_the_models_action_and_streams_its_final_answer,
    test_the_last_round_offers_no_tools_so_the_run_ends_with_an_answer,
)

EXECUTOR = "celery"

__all__ = [
    "make_agent",
    "test_an_agent_calls_a_tool_and_answers_with_its_result",
    "test_blocking_is_refused_and_async_gives_the_agents_answer",
    "test_react_strategy_reads_the_models_action_and_streams_its_final_answer",
    "test_the_last_round_offers_no_tools_so_the_run_ends_with_an_answer",
]
