"""common.op_times: the operator recorder behind the papers' bench_ops.py.

No test times anything against a threshold: they check that the mode counts the right calls and FLOPs, that
replaying an operator alone leaves the step's values untouched (in-place and out= forms on copies), and that
random operators are not replayed (the generator's state stays as without the mode)."""

import torch

from common.op_times import OpTimes, product_flops


def _step(x, w, sparse):
    y = torch.addmm(torch.zeros(3), x, w)        # 2 x 4 x 5 x 3 FLOPs
    y.mul_(2.0).relu_()                           # in place: replayed on copies
    z = torch.empty(4, 3)
    torch.mm(x, w, out=z)                         # out=: replayed on a copy
    noise = torch.rand(4, 3)                      # random: not replayed
    s = sparse @ w                                # CSR: 2 x nnz x 3
    return y + z + noise, s


def test_counts_flops_and_leaves_values_and_generator_as_without_the_mode():
    torch.manual_seed(0)
    x, w = torch.randn(4, 5), torch.randn(5, 3)
    sparse = torch.tensor([[1.0, 0, 0, 2, 0], [0, 0, 3, 0, 0]]).to_sparse_csr()
    torch.manual_seed(1)
    want = _step(x, w, sparse)
    want_state = torch.get_rng_state()
    ops = OpTimes(repeats=3)
    torch.manual_seed(1)
    with ops:
        got = _step(x, w, sparse)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(torch.get_rng_state(), want_state)
    names = {r.name: r for r in ops.rows.values()}
    assert names["addmm"].kind == names["mm"].kind == "product"
    assert names["rand"].kind == "random" and names["rand"].alone_s == names["rand"].step_s
    assert names["mul_"].kind == names["relu_"].kind == "other"
    assert ops.flops() == 2 * 4 * 5 * 3 * 2 + 2 * 3 * 3
    assert ops.calls("product") == 3
    assert all(r.alone_s > 0 and r.count >= 1 for r in ops.rows.values())
    assert "product" in ops.summary() and "top 15" in ops.summary()


def test_product_flops_of_the_batched_and_plain_forms():
    a, b = torch.empty(2, 3, 4), torch.empty(2, 4, 5)
    assert product_flops("bmm", (a, b)) == 2 * 2 * 3 * 4 * 5
    assert product_flops("baddbmm", (torch.empty(2, 3, 5), a, b)) == 2 * 2 * 3 * 4 * 5
    assert product_flops("mm", (torch.empty(3, 4), torch.empty(4, 5))) == 2 * 3 * 4 * 5
    assert product_flops("add", (a, a)) == 0
