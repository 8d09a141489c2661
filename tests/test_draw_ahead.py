"""common.draw_ahead: tasks run one after another, in submission order, on one thread other than the caller's."""
import threading

import torch

from common.draw_ahead import submit


def test_tasks_run_in_submission_order_on_one_worker_thread():
    seen = []
    futures = [submit(lambda k=k: seen.append((k, threading.current_thread().name))) for k in range(200)]
    for f in futures:
        f.result()
    assert [k for k, _ in seen] == list(range(200))
    names = {n for _, n in seen}
    assert len(names) == 1 and threading.current_thread().name not in names


def test_draws_on_the_worker_continue_the_callers_stream():
    torch.manual_seed(3)
    want = [torch.rand(5) for _ in range(4)]
    torch.manual_seed(3)
    got = [submit(torch.rand, 5) for _ in range(4)]
    assert all(torch.equal(w, g.result()) for w, g in zip(want, got))
