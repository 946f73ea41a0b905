"""Many GPTs as one batched computation: each instance is the single-model GPT and trains as ``train`` trains it.

The batched trainer (verify.training.batched) is what K7's seeds and the divergence atlas stand on, so it is
checked against the single-model reference (verify.training.gpt / verify.training.train) in float64, instance by
instance, and for isolation: what happens to one instance (another learning rate, a divergence) must not change
any other.
"""
from __future__ import annotations

import pytest
import torch

from verify.training.batched import (
    BatchedAdamW,
    BatchedGPT,
    BatchedTrainConfig,
    layer_moments,
    run_parallel,
    train_batched,
)
from verify.training.corpus import default_corpus_bytes, from_bytes
from verify.training.gpt import GPT, gpt_config
from verify.training.train import TrainConfig, train

# Float64 round-off of one forward/backward of these tiny models is ~1e-15 relative; batched and single matmuls
# sum in different orders, and Adam's normalised update m/√v is scale-free, so parameter differences after a few
# dozen steps stay ~lr·1e-14. 1e-11 (absolute, parameters are O(1)) is far above that and far below the effect
# of any real difference (one wrong learning rate moves parameters by ~1e-3, see the meta-test).
PARAM_ATOL = 1e-11
STEPS = 16


@pytest.fixture(scope="module")
def corpus():
    return from_bytes(default_corpus_bytes(60_000), "stdlib-test")


def _cfg(placement="pre", **kw):
    return gpt_config(vocab_size=256, block_size=16, d=16, n_blocks=2, n_heads=2, placement=placement,
                      dtype=torch.float64, **kw)


def _batched_cfg(**kw):
    base = dict(steps=STEPS, batch_size=4, warmup=3, eval_every=8, eval_batches=2, progress=False)
    return BatchedTrainConfig(**{**base, **kw})


def _single(cfg, corpus, seed, lr, wd, dt):
    g = GPT(cfg.replace(stack=cfg.stack.replace(dt=dt)), seed=seed)
    r = train(g, corpus, TrainConfig(steps=STEPS, batch_size=4, warmup=3, lr=lr, weight_decay=wd, seed=seed,
                                     eval_every=8, eval_batches=2, progress=False), monitor=False)
    return g, r


def _max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    return max(float((pa[k].detach() - pb[k].detach()).abs().max()) for k in pa)


@pytest.mark.parametrize("placement", ["pre", "peri", "post"])
def test_instance_i_is_the_single_model_with_seed_i(placement):
    """BatchedGPT(cfg, seeds) holds GPT(cfg, seed=seeds[i]) as instance i: same weights, same logits."""
    cfg = _cfg(placement)
    bm = BatchedGPT(cfg, [4, 9])
    idx = torch.randint(0, 256, (2, 3, 16), generator=torch.Generator().manual_seed(0))
    logits = bm(idx)[0]
    for i, s in enumerate([4, 9]):
        g = GPT(cfg, seed=s)
        assert _max_param_diff(g, bm.instance(i)) == 0.0
        torch.testing.assert_close(logits[i], g(idx[i])[0], rtol=1e-13, atol=1e-13)  # float64 round-off


def test_training_instance_i_reproduces_train_with_its_own_hyperparameters(corpus):
    """Per-instance seed, learning rate, weight decay and Δt: each instance ends where the single-model trainer
    (same batches, torch's AdamW, global clipping) ends, and its losses are the same."""
    cfg, seeds, lrs, wds, dts = _cfg("peri"), [3, 5, 7], [3e-3, 1e-3, 3e-3], [0.1, 0.0, 0.3], [1.0, 0.5, 0.1]
    bm = BatchedGPT(cfg, seeds, dt=dts)
    res = train_batched(bm, corpus, _batched_cfg(lr=lrs, weight_decay=wds))
    assert res.diverged_at == [None, None, None]
    for i in range(3):
        g, r = _single(cfg, corpus, seeds[i], lrs[i], wds[i], dts[i])
        assert _max_param_diff(g, bm.instance(i)) < PARAM_ATOL
        h = res.instance_history(i)
        torch.testing.assert_close(torch.tensor(h["train_loss"]), torch.tensor(r.history["train_loss"]),
                                   rtol=1e-12, atol=0)
        torch.testing.assert_close(torch.tensor(h["val_loss"]), torch.tensor(r.history["val_loss"]), rtol=1e-12, atol=0)


def test_meta_a_wrong_learning_rate_is_caught_by_the_reproduction_check(corpus):
    """The reproduction tolerance can fail: training instance 0 at 1.1× its learning rate moves it far outside."""
    cfg = _cfg("pre")
    bm = BatchedGPT(cfg, [3])
    train_batched(bm, corpus, _batched_cfg(lr=3.3e-3, weight_decay=0.1))
    g, _ = _single(cfg, corpus, 3, 3e-3, 0.1, 1.0)
    assert _max_param_diff(g, bm.instance(0)) > 1e3 * PARAM_ATOL


def test_a_diverging_instance_is_frozen_and_leaves_the_others_untouched(corpus):
    """NaN weights in one instance: it is reported diverged at step 0 and frozen; the other instance trains
    exactly as it does alone."""
    cfg = _cfg("pre")
    alone = BatchedGPT(cfg, [5])
    train_batched(alone, corpus, _batched_cfg())
    pair = BatchedGPT(cfg, [1, 5])
    with torch.no_grad():
        pair.stack.steps[0].sublayer.W_v[0, 0, 0] = float("nan")
    res = train_batched(pair, corpus, _batched_cfg())
    assert res.diverged_at == [0, None]
    assert _max_param_diff(alone.instance(0), pair.instance(1)) < PARAM_ATOL
    assert torch.isnan(torch.tensor(res.history["train_loss"][0][0]))


def test_batched_adamw_with_one_instance_is_torch_adamw():
    """The flat batched optimiser is torch.optim.AdamW (decoupled decay on the decayed group only)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 5, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(1, 3, dtype=torch.float64, generator=gen)
    ours = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())]
    ref = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())]
    opt = BatchedAdamW([(ours[0], True), (ours[1], False)], 1e-2, 0.3, 1)
    topt = torch.optim.AdamW([{"params": [ref[0]], "weight_decay": 0.3}, {"params": [ref[1]], "weight_decay": 0.0}],
                             lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    for t in range(25):
        grads = [torch.randn(p.shape, dtype=torch.float64, generator=gen) for p in ours]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step(1.0, opt.flat_grad())
        topt.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-15)  # same elementwise arithmetic, float64


def test_batched_inputs_are_refused_with_a_named_parameter():
    cfg = _cfg("pre")
    with pytest.raises(ValueError, match="dt"):
        BatchedGPT(cfg, [0, 1], dt=[1.0, -1.0])
    with pytest.raises(ValueError, match="seeds"):
        BatchedGPT(cfg, [])
    bm = BatchedGPT(cfg, [0, 1])
    with pytest.raises(ValueError, match="idx"):
        bm(torch.zeros(3, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="lr"):
        BatchedAdamW([(p, True) for p in bm.parameters()], [1e-3, float("nan")], 0.1, 2)
    with pytest.raises(ValueError, match="weight_decay"):
        BatchedAdamW([(p, True) for p in bm.parameters()], 1e-3, [0.1, 0.1, 0.1], 2)
    with pytest.raises(ValueError, match="steps"):
        BatchedTrainConfig(steps=0)


def test_layer_moments_are_per_instance_k7_moments():
    """layer_moments returns, per instance, the K7 moments of every hidden state X_0..X_K."""
    bm = BatchedGPT(_cfg("peri"), [0, 1])
    idx = torch.randint(0, 256, (6, 16), generator=torch.Generator().manual_seed(1))
    m = layer_moments(bm, idx)
    assert len(m["mean_abs"]) == 2 and len(m["mean_abs"][0]) == bm.cfg.stack.n_steps + 1
    g = GPT(bm.cfg, seed=1)
    states = g(idx, trajectory=True)[2]
    torch.testing.assert_close(torch.tensor(m["datawise_var"][1], dtype=torch.float64),
                               torch.stack([s.double().var(dim=1, unbiased=False).mean() for s in states]),
                               rtol=1e-12, atol=0)


def _square(x: int) -> dict:
    return {"x": x, "y": x * x, "threads": torch.get_num_threads()}


def test_run_parallel_keeps_order_and_matches_inline():
    jobs = [{"x": i} for i in range(4)]
    assert run_parallel(_square, jobs, workers=2) == run_parallel(_square, jobs, workers=1)


# ---- the committed run cache ------------------------------------------------------------------------------------
def test_run_cache_computes_only_what_is_missing_and_keys_on_everything_that_decides_a_run(tmp_path):
    from verify.training.cache import RunCache, run_key

    calls = []

    def compute(configs):
        calls.append(list(configs))
        return [{"value": c["lr"] * 10} for c in configs]

    a, b = {"lr": 1.0, "depth": 4}, {"lr": 2.0, "depth": 4}
    ka, kb = run_key(a, "sha-x"), run_key(b, "sha-x")
    assert len({ka, kb, run_key(a, "sha-y"), run_key({**a, "depth": 12}, "sha-x")}) == 4
    assert run_key(dict(reversed(list(a.items()))), "sha-x") == ka  # canonical: key order does not matter
    cache = RunCache("fam", tmp_path)
    assert cache.fetch([(ka, a)], compute) == [{"value": 10.0}]
    again = RunCache("fam", tmp_path)  # re-read from disk
    assert again.fetch([(ka, a), (kb, b)], compute) == [{"value": 10.0}, {"value": 20.0}]
    assert calls == [[a], [b]] and again.hits == 1
    off = RunCache("fam", tmp_path, enabled=False)  # --retrain: nothing is read
    off.fetch([(ka, a)], compute)
    assert calls[-1] == [a]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="retrain"):
        RunCache("bad", tmp_path)
    with pytest.raises(ValueError, match="name"):
        RunCache("a/b", tmp_path)
