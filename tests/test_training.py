"""Training small GPTs: corpus, model, optimiser, schedule, determinism, monitors, data-parallel training.

These are the instruments behind K7 and F6; each test states the property it checks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verify.engine import moments
from verify.engine.zoo import StackConfig
from verify.training.corpus import (
    Corpus,
    default_corpus_bytes,
    from_bytes,
    load_corpus,
    stdlib_files,
)
from verify.training.gpt import GPT, GPTConfig, gpt_config, state_digest
from verify.training.monitors import (
    BFLOAT16_MAX,
    FLOAT16_MAX,
    Monitor,
    output_map,
    step_activation,
)
from verify.training.train import TrainConfig, lr_at, make_optimizer, spawn_ddp, train

SMALL = 60_000  # bytes of the embedded corpus the tests use (the figures use 2 MB)


def tiny_model(placement="pre", dt=1.0, dtype=torch.float32, seed=0, **kw) -> GPT:
    cfg = gpt_config(vocab_size=256, block_size=16, d=16, n_blocks=2, n_heads=2, placement=placement, dt=dt,
                     dtype=dtype, **kw)
    return GPT(cfg, seed=seed)


def tiny_train_config(**kw) -> TrainConfig:
    base = dict(steps=12, batch_size=8, lr=3e-3, warmup=3, eval_every=6, eval_batches=2, monitor_every=6,
                monitor_batch=8, progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return from_bytes(default_corpus_bytes(SMALL), "stdlib-test")


# ---- corpus ------------------------------------------------------------------------------------------------------
def test_default_corpus_is_deterministic_byte_level_stdlib_source():
    """The embedded corpus needs no download: sorted stdlib sources, cut at max_bytes, same bytes every time."""
    a, b = default_corpus_bytes(SMALL), default_corpus_bytes(SMALL)
    assert a == b and len(a) == SMALL
    assert a.startswith(b"# file: ")
    files = stdlib_files()
    assert files == sorted(files, key=lambda p: p.as_posix()) or len(files) > 100
    c = from_bytes(a, "x")
    assert c.vocab_size == 256 and c.tokens.dtype == np.uint8 and len(c.sha256) == 64
    assert c.split("train").size + c.split("val").size == SMALL


def test_batches_are_next_token_windows(corpus):
    """Targets are the inputs shifted by one token; the same generator seed gives the same batch."""
    x, y = corpus.batch("train", 4, 16, np.random.default_rng(0))
    x2, _ = corpus.batch("train", 4, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x, x2)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_data_files_text_and_uint16(tmp_path):
    """--data takes a text file (bytes) or a flat uint16 token file (GPT-2 style .bin)."""
    text = tmp_path / "t.txt"
    text.write_bytes(b"hello world, " * 10)
    c = load_corpus(text)
    assert c.vocab_size == 256 and bytes(c.tokens[:5]) == b"hello"
    toks = (np.arange(1000) * 37 % 50000).astype("<u2")
    binf = tmp_path / "t.bin"
    binf.write_bytes(toks.tobytes())
    c = load_corpus(binf)
    assert np.array_equal(c.tokens, toks.astype(np.int64)) and c.vocab_size == 50257
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"abc" * 11)
    with pytest.raises(ValueError, match="^path"):
        load_corpus(odd)
    with pytest.raises(ValueError, match="^path"):
        load_corpus(tmp_path / "missing.txt")


def test_corpus_bad_arguments_name_the_parameter(corpus):
    with pytest.raises(ValueError, match="^max_bytes"):
        default_corpus_bytes(10)
    with pytest.raises(ValueError, match="^split"):
        corpus.split("test")
    with pytest.raises(ValueError, match="^block"):
        corpus.batch("val", 2, 10**7, np.random.default_rng(0))
    with pytest.raises(ValueError, match="^batch_size"):
        corpus.batch("val", 0, 8, np.random.default_rng(0))


# ---- the GPT -----------------------------------------------------------------------------------------------------
def test_gpt_hidden_states_are_zoo_states_and_attention_is_causal():
    """X_k has the zoo's shape (1, B, T, d); changing a later token leaves earlier logits unchanged."""
    m = tiny_model(dtype=torch.float64)
    idx = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(1))
    logits, loss, states = m(idx, idx, trajectory=True)
    assert logits.shape == (3, 10, 256) and len(states) == m.cfg.stack.n_steps + 1
    assert all(s.shape == (1, 3, 10, 16) for s in states)
    idx2 = idx.clone()
    idx2[:, 7] = (idx2[:, 7] + 1) % 256
    logits2 = m(idx2)[0]
    assert torch.equal(logits[:, :7], logits2[:, :7]) and not torch.equal(logits[:, 7:], logits2[:, 7:])
    assert math.isfinite(float(loss.detach()))


def test_weight_decay_acts_on_matrices_only():
    decay, no_decay = tiny_model().decay_groups()
    names = [n for n, _ in decay]
    assert {"wte", "wpe", "head"} <= set(names)
    assert all(n.rsplit(".", 1)[-1] in ("W_q", "W_k", "W_v", "W_o", "W1", "W2") or n in ("wte", "wpe", "head")
               for n in names)
    assert all(n.rsplit(".", 1)[-1] in ("gamma", "beta", "b_o", "b1", "b2") for n, _ in no_decay)


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="^stack"):
        GPTConfig(256, 16, StackConfig(d=8, causal=False))
    with pytest.raises(ValueError, match="^block_size"):
        GPTConfig(256, 0, StackConfig(d=8, causal=True))
    with pytest.raises(ValueError, match="^lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="^grad_clip"):
        TrainConfig(grad_clip=0.0)
    with pytest.raises(ValueError, match="^steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="^idx"):
        tiny_model()(torch.zeros(3, dtype=torch.long))


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # cosine midpoint: (1 + 0.1)/2
    assert lr_at(100, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_adamw_decay_is_decoupled():
    """With zero gradients an AdamW step shrinks a decayed matrix by exactly (1 − lr·λ) and leaves gains alone."""
    m = tiny_model(dtype=torch.float64)
    opt = make_optimizer(m, TrainConfig(lr=0.01, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        factor = 1 - 0.01 * 0.5 if n in dict(m.decay_groups()[0]) else 1.0
        assert torch.allclose(p, factor * before[n], rtol=1e-15, atol=0)


def test_training_learns_and_is_bit_deterministic(corpus):
    """Same seed → identical weights (digest); the validation loss falls below the uniform log 256."""
    runs = []
    for _ in range(2):
        m = tiny_model()
        res = train(m, corpus, tiny_train_config(), monitor=False)
        runs.append((state_digest(m), res.history))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert runs[0][1]["val_loss"][-1] < math.log(256)
    m = tiny_model(seed=1)
    train(m, corpus, tiny_train_config(seed=1), monitor=False)
    assert state_digest(m) != runs[0][0]


def test_float64_training_and_divergence_is_reported(corpus):
    m = tiny_model(dtype=torch.float64)
    res = train(m, corpus, tiny_train_config(steps=4), monitor=False)
    assert all(p.dtype == torch.float64 for p in m.parameters()) and math.isfinite(res.final_val_loss)
    m = tiny_model()
    with torch.no_grad():
        m.head.fill_(float("nan"))
    with pytest.raises(FloatingPointError):
        train(m, corpus, tiny_train_config(steps=2), monitor=False)


# ---- monitors ----------------------------------------------------------------------------------------------------
def test_monitor_reads_the_k7_moments_adjoints_and_grads_through_hooks(corpus):
    """The hooked moments equal verify.engine.moments on the trajectory; adjoint norms equal autograd's ∂loss/∂X_k;
    the model's own gradients are left as they were."""
    m = tiny_model(dtype=torch.float64, placement="peri")
    mon = Monitor(m)
    x, y = corpus.batch("val", 6, 16, np.random.default_rng(3))
    for p in m.parameters():
        p.grad = torch.full_like(p, 7.0)
    rec = mon.measure(m, x, y, step=5)
    assert all(bool((p.grad == 7.0).all()) for p in m.parameters())
    _, loss, states = m(x, y, trajectory=True)
    grads = torch.autograd.grad(loss, states)
    for k, s in enumerate(states):
        ref = moments.all_moments(s.detach())
        for key in ("mean_abs", "entrywise_var", "datawise_var"):
            assert rec[key][k] == pytest.approx(float(ref[key][0]), rel=1e-12)
        assert rec["adjoint_norm"][k] == pytest.approx(float(grads[k].norm()), rel=1e-10)
        assert rec["float16_headroom"][k] == pytest.approx(rec["max_abs"][k] / FLOAT16_MAX)
        assert rec["bfloat16_headroom"][k] == pytest.approx(rec["max_abs"][k] / BFLOAT16_MAX)
    assert len(rec["param_grad_norm"]) == m.cfg.stack.n_steps and rec["step"] == 5
    mon.remove()
    m(x, y)
    assert len(mon.log) == 1


def test_step_activation_reproduces_the_pre_ln_branch():
    """h_k W_k + b_k equals the step's update / Δt (the decomposition F6 uses)."""
    m = tiny_model(dtype=torch.float64, dt=0.5)
    idx = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, _, states = m(idx, trajectory=True)
        for k, s in enumerate(m.stack.steps):
            W, b = output_map(s)
            h = step_activation(s, states[k])
            update = s.dt * (h @ W[0] + b[0])
            assert torch.allclose(states[k + 1] - states[k], update, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="^step"):
        step_activation(tiny_model(placement="peri").stack.steps[0], states[0].float())


# ---- data parallel -----------------------------------------------------------------------------------------------
def test_ddp_two_gloo_ranks_end_with_identical_weights(tmp_path):
    """torch DistributedDataParallel, 2 CPU processes (gloo): gradients are averaged, so both ranks hold the same
    weights after training on different batches — and the weights did move."""
    model_kw = dict(vocab_size=256, block_size=16, d=16, n_blocks=1, n_heads=2)
    train_kw = dict(steps=3, batch_size=4, warmup=1, eval_every=0, progress=False)
    records = spawn_ddp(2, str(tmp_path), model_kw, train_kw, default_corpus_bytes(20_000))
    assert records[0]["digest"] == records[1]["digest"]
    init = GPT(gpt_config(**model_kw), seed=0)
    assert records[0]["digest"] != state_digest(init)


def test_same_seed_is_the_same_model_on_every_device(device):
    """Weights are drawn on the CPU from an explicit generator, then moved: a CUDA GPT with a given seed is the CPU
    one, and (float64, TF32 off) its logits agree to round-off; a few training steps run on the device."""
    cpu = tiny_model(dtype=torch.float64)
    cfg = gpt_config(vocab_size=256, block_size=16, d=16, n_blocks=2, n_heads=2, dtype=torch.float64, device=device)
    dev = GPT(cfg, seed=0)
    for (n, p), (_, q) in zip(cpu.named_parameters(), dev.named_parameters()):
        assert torch.equal(p, q.cpu()), n
    idx = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = cpu(idx)[0]
        out = dev(idx.to(dev.device))[0].cpu()
    # float64 on both; different kernels reorder sums: 1e-12 relative of the logit scale
    assert torch.allclose(out, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    corpus = from_bytes(default_corpus_bytes(20_000), "device-test")
    res = train(dev, corpus, tiny_train_config(steps=3, eval_every=0, monitor_every=0), monitor=True)
    assert math.isfinite(res.final_val_loss) and res.monitor.log
