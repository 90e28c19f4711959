from routing.retry import RetryBudget, RetryBudgetConfig


def _spend(budget: RetryBudget, now: float) -> int:
    spent = 0
    while budget.try_withdraw(now):
        spent += 1
    return spent


def test_allow_minimum_retries_per_second_without_traffic() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_per_s=1.0, window_s=10.0))
    assert _spend(budget, now=0.0) == 10


def test_allow_retries_up_to_ratio_of_recent_requests() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_per_s=0.0, window_s=10.0))
    for _ in range(50):
        budget.record_request(0.0)
    assert _spend(budget, now=1.0) == 10


def test_refill_retry_budget_once_window_passes() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=0.5, window_s=10.0))
    _spend(budget, now=0.0)
    assert not budget.try_withdraw(5.0) and budget.try_withdraw(10.5)


def test_allow_retries_in_young_budget_window() -> None:
    # Right after start there is no traffic to take a ratio of: the minimum rate still allows
    # retries at once, for the whole window's worth.
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_per_s=10.0, window_s=10.0))
    budget.record_request(0.0)
    assert all(budget.try_withdraw(0.001 * i) for i in range(50))
