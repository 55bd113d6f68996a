"""The task and treasury behaviour suites, collected here again so they also run on PostgreSQL.

The functions are the ones in tests/subagents and tests/treasury (where they run on SQLite); collected in this
folder, their `ctx` and `harness` fixtures come from tests/store/conftest.py, here on PostgreSQL. Left out: the
tests that open the SQLite file itself (their PostgreSQL counterparts are in test_postgres.py).
"""

from __future__ import annotations

from tests.subagents.test_group_commit import (  # noqa: F401
    test_a_run_settles_every_sub_task_in_grouped_transactions,
    test_group_commit_on_the_ledger_database,
)
from tests.subagents.test_plan_loop import (  # noqa: F401
    test_plan_reserves_exactly_the_budget_and_report_settles_it,
    test_retries_never_take_a_task_over_its_budget,
    test_usage_beyond_the_share_leaves_an_overrun_alert,
)
from tests.treasury.test_service import (  # noqa: F401
    test_approval_checks_allowlist_and_per_transaction_cap,
    test_auto_approval_under_the_max,
    test_caps_hold_per_utc_day_and_reopen_the_next_day,
    test_concurrent_executions_of_one_intent_pay_once,
    test_counts_under_faults,
    test_each_approved_intent_pays_at_most_once,
    test_execution_rechecks_the_policy,
    test_failures_trip_the_breaker_until_a_person_resets_it,
    test_full_flow_records_balanced_entries_once,
    test_idempotency_conflict_leaves_the_outcome_unknown,
    test_ledger_derived_credit_for_providers_without_an_api,
    test_not_found_becomes_failed_safe_after_grace_and_is_not_repaid,
    test_not_sent_goes_back_to_approved_with_the_same_key,
    test_reconcile_reports_differences,
    test_reserve_is_kept,
    test_submitted_then_polled_later,
    test_the_agent_cannot_skip_approval,
    test_unknown_outcome_is_never_paid_twice_and_reconcile_records_it_once,
)

# Only PostgreSQL here: on SQLite these same functions already run where they live.
BACKENDS = ("postgres",)
