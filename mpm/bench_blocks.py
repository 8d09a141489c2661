"""Per-block thread time of an MPM training step, and the rates its floors are computed from (issue 15).

Wraps the model's own functions with `time.thread_time_ns()` counters (the profiler inflates the step
by about half), times N training steps on ML-100k after 3 warm-up steps at 1 thread, then the sgemm
rate, the copy bandwidth and the matrix-product rates at the step's shapes, and prints one JSON
object. README "Speed", "What 2x would need":

    python -m mpm.bench_blocks 10
"""
import collections, json, sys, time
if len(sys.argv) != 2 or not sys.argv[1].isdigit() or not 1 <= int(sys.argv[1]) <= 200:
    sys.exit(f"bench_blocks: give the number of timed steps, 1 to 200 (one ML-100k epoch has 222; got {sys.argv[1:]}): "
             "python -m mpm.bench_blocks 10")
import numpy as np, torch
torch.set_num_threads(1)
import mpm.model as M
from mpm.data import load
from mpm.main import DEFAULTS, build_model, parse_args, sample_epoch
from common.bench import sgemm_rate
acc = collections.Counter(); on = [False]
def wrap(obj, name, label, static=False):
    f = getattr(obj, name)
    def g(*a, **k):
        t = time.thread_time_ns()
        try: return f(*a, **k)
        finally:
            if on[0]: acc[label] += time.thread_time_ns() - t
    setattr(obj, name, staticmethod(g) if static else g)
wrap(M, "time_major_keep", "dropout_draws")
wrap(M.TemporalConvNet, "forward_time_major", "tcn_fwd_incl_draws")
wrap(M.PreferenceMLP, "forward_time_major", "det_fwd")
wrap(M.PreferenceMLP, "forward", "general_fwd")
wrap(M.OutputModule, "forward", "out_fwd")
wrap(torch.nn.Embedding, "forward", "embed_fwd")
wrap(M.MPM, "loss", "loss_fwd_total")
wrap(M._TemporalBlockFunction, "backward", "tcn_bwd", True)
wrap(M._DetectorMLPFunction, "backward", "det_bwd", True)
data = load("ml-100k")
args = parse_args(["--dataset", "ml-100k", "--no-progress", "--device", "cpu"])
torch.manual_seed(DEFAULTS["seed"])
model = build_model(data, args)
opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
entry, item, label = sample_epoch(data.train_users, data.train_items, data.train_positive_keys(), data.nb_items, 4, np.random.default_rng(3))
U, H = torch.from_numpy(data.train_users), torch.from_numpy(data.train_history)
E, I, L = (torch.from_numpy(a) for a in (entry, item, label))
model.train()
def tm(lb, f):
    t = time.thread_time_ns(); r = f()
    if on[0]: acc[lb] += time.thread_time_ns() - t
    return r
def step(s):
    sl = slice(s * 2048, (s + 1) * 2048)
    u, i, h, l = tm("data", lambda: (lambda e: (U[e], I[sl], H[e], L[sl]))(E[sl]))
    loss = model.loss(u, i, h, l); tm("item", loss.item)
    tm("zero_grad", lambda: opt.zero_grad(set_to_none=True))
    tm("backward_total", loss.backward)
    tm("adam", opt.step)
for s in range(3): step(s)
n = int(sys.argv[1]); on[0] = True
t0 = time.thread_time_ns()
for s in range(3, 3 + n): step(s)
tot = (time.thread_time_ns() - t0) / n / 1e6
res = {k: v / n / 1e6 for k, v in acc.items()}
res["step_total"] = tot
res["sgemm_gflops"] = sgemm_rate(2048, 1.0)
def bw(nbytes):
    a = torch.empty(nbytes // 4); b = torch.empty_like(a); best = 1e9
    for _ in range(30):
        t = time.perf_counter(); b.copy_(a); best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best / 1e9
res["copy_GBps_2.4MB"] = bw(2359296); res["copy_GBps_64MB"] = bw(64 << 20)
def rate_of(m, k, nn, acc_=False):
    a, b = torch.randn(m, k), torch.randn(k, nn); c = torch.zeros(m, nn); best = 1e9
    for _ in range(40):
        t = time.perf_counter()
        torch.addmm(c, a, b, out=c) if acc_ else torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return round(2 * m * k * nn / best / 1e9, 1)
res["rates"] = {"[18432,32]x[32,32]+=": rate_of(18432, 32, 32, True), "[32,18432]x[18432,32]": rate_of(32, 18432, 32),
  "[1024,32]x[32,128]": rate_of(1024, 32, 128), "[1024,128]x[128,64]": rate_of(1024, 128, 64), "[1024,64]x[64,32]": rate_of(1024, 64, 32),
  "[64,1024]x[1024,128]+=": rate_of(64, 1024, 128, True), "[1024,64]x[64,128]": rate_of(1024, 64, 128),
  "[2048,288]x[288,128]": rate_of(2048, 288, 128), "[288,2048]x[2048,128]": rate_of(288, 2048, 128)}
t = time.perf_counter()
for _ in range(50): torch.randint(-2**63, 2**63 - 1, (18432 * 32 // 8,), dtype=torch.int64)
res["randint_mask_ms"] = (time.perf_counter() - t) / 50 * 1e3
print(json.dumps(res, indent=0))
