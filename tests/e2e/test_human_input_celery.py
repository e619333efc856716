"""The human-input tests again with the `celery` executor: the first execution and each
resumed one run on the `generation` queue (a thread of the embedded worker, or a `conduit worker`
process in the distributed mode)."""

from tests.e2e.test_human_input import (
    STACK_ENV,
    approval,
    test_a_console_member_answers_a_draft_run_s_form,
    test_a_form_out_of_time_takes_the_timeout_branch,
    test_a_graph_that_cannot_pause_is_refused_naming_the_node,
    test_a_paused_run_is_stopped_and_its_form_closed,
    test_a_rejection_takes_its_own_branch,
    test_a_repeat_under_the_same_key_gives_the_paused_run,
    test_a_run_pauses_on_its_form_and_an_answer_resumes_it,
    test_an_answer_that_does_not_fit_is_refused_and_changes_nothing,
    test_an_async_run_shows_paused_then_ends_once_answered,
    test_forms_belong_to_their_app_and_the_web_tier_reads_them_by_token,
    test_the_stream_ends_with_the_form_and_the_pause,
    test_two_answers_at_once_resume_the_run_once,
)

EXECUTOR = "celery"

__all__ = [
    "STACK_ENV",
    "approval",
    "test_a_console_member_answers_a_draft_run_s_form",
    "test_a_form_out_of_time_takes_the_timeout_branch",
    "test_a_graph_that_cannot_pause_is_refused_naming_the_node",
    "test_a_paused_run_is_stopped_and_its_form_closed",
    "test_a_rejection_takes_its_own_branch",
    "test_a_repeat_under_the_same_key_gives_the_paused_run",
    "test_a_run_pauses_on_its_form_and_an_answer_resumes_it",
    "test_an_answer_that_does_not_fit_is_refused_and_changes_nothing",
    "test_an_async_run_shows_paused_then_ends_once_answered",
    "test_forms_belong_to_their_app_and_the_web_tier_reads_them_by_token",
    "test_the_stream_ends_with_the_form_and_the_pause",
    "test_two_answers_at_once_resume_the_run_once",
]
