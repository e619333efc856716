"""Chatflow turns again with the `celery` executor: the turn's spec (graph, memory, the
conversation's variables) goes through the queue; the worker stores the answer and the
variables as the run left them."""

from tests.e2e.test_chatflow_runs import (
    chatflow,
    test_a_blocking_turn_answers_the_chat_shape,
    test_memory_and_conversation_variables_carry_across_turns,
)

EXECUTOR = "celery"

__all__ = [
    "chatflow",
    "test_a_blocking_turn_answers_the_chat_shape",
    "test_memory_and_conversation_variables_carry_across_turns",
]
