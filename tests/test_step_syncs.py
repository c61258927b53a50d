"""Host synchronisations of a training step (issue 11: on a GPU every read of a device value
makes the host wait, so the host cannot queue the backward pass while the forward runs).

``bench_dpo_step.OpCounter`` counts them on the CPU: value reads, ``tolist``/``numpy``,
operators whose output size depends on the data, boolean-mask indexing. aihf's offline
steps read the device once (the loss, the metrics and the gradient norms together, in
``Trainer.train_step``); the remaining one is transformers' own mask check."""

import sys
from pathlib import Path

import pytest
import torch
from test_lm_engine import loop, make_method

from aihf.lm.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_dpo_step import OpCounter, aihf_host_side  # noqa: E402


def _counted(work) -> dict:
    counter = OpCounter()
    counter.start()
    try:
        work()
    finally:
        counter.stop()
    return counter.result()


def test_the_counter_sees_value_reads_data_dependent_sizes_and_mask_indexing_but_not_index_tensors():
    x = torch.arange(6.0)
    mask, index = x > 2, torch.tensor([1, 3])
    assert _counted(lambda: float(x.sum()))["syncs"] == 1
    assert _counted(lambda: x.tolist())["syncs"] == 1
    assert _counted(lambda: x[mask])["syncs"] == 1
    assert _counted(lambda: mask.nonzero())["syncs"] == 1
    assert _counted(lambda: x.index_select(0, index))["syncs"] == 0
    assert _counted(lambda: x[index])["syncs"] == 0
    repeats = torch.tensor([1, 0, 2, 1, 1, 1])
    assert _counted(lambda: x.repeat_interleave(repeats))["syncs"] == 1  # the output's size is repeats.sum()
    assert _counted(lambda: x.repeat_interleave(repeats, output_size=6))["syncs"] == 0
    assert _counted(lambda: x.repeat_interleave(2))["syncs"] == 0
    views = _counted(lambda: x.view(2, 3).t())
    assert views["ops"] == 2 and views["kernels"] == 0


class ReadingSGD(torch.optim.Optimizer):
    """Plain SGD that reads one value from the device per step (as torch's per-parameter AdamW
    does on a CPU with its step counter), so the test does not depend on AdamW's internals."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"])
        return float(self.param_groups[0]["params"][0].grad.norm())  # the one read


def test_the_counter_counts_backward_and_keeps_the_optimizer_apart():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = ReadingSGD([weight])
    tolist = torch.Tensor.tolist

    def step():
        (weight * 2).sum().backward()
        optimizer.step()

    counts = _counted(step)
    assert counts["op_counts"].get("aten.mul", 0) >= 2  # the forward product and its gradient
    assert counts["optimizer_kernels"] > 0 and counts["optimizer_syncs"] == 1  # ReadingSGD's read
    assert counts["syncs"] == 0
    assert torch.Tensor.tolist is tolist  # stop() put the method back


def _second_step_counted(tmp_path, method, **loop_settings) -> tuple[OpCounter, dict]:
    """(the counter, the metrics) of ``method``'s second training step (the first one warms up)."""
    trainer = Trainer(method, loop(tmp_path, **loop_settings))
    method.start_round(0, seed=0)
    trainer.train_step()
    trainer.step += 1
    counter = OpCounter(host_side=aihf_host_side())
    counter.start()
    try:
        metrics = trainer.train_step()
    finally:
        counter.stop()
    return counter, metrics


@pytest.mark.parametrize("name", ["dpo", "aihf-dpo", "sft"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed-chunked"])
def test_an_offline_step_reads_the_device_once(tmp_path, name, packed):
    method = make_method(name)
    method.padding_free, method.logprob_chunk = packed, (8 if packed else None)  # packed and chunked, or neither
    counter, metrics = _second_step_counted(tmp_path, method, gradient_accumulation_steps=2, micro_batch_size=2)
    ours = {site: n for site, n in counter.sync_sites.items() if "transformers/" not in site}
    assert len(ours) == 1 and list(ours.values()) == [1], ours
    assert next(iter(ours)).startswith("tolist at lm/trainer.py") and next(iter(ours)).endswith("train_step")
    assert {"loss", "grad_norm/policy"} <= set(metrics) and all(isinstance(v, float) for v in metrics.values())


@pytest.mark.parametrize("name", ["rlhf", "aihf"])
def test_an_rl_step_reads_the_device_only_where_it_must(tmp_path, name):
    """Beside transformers' generate (its own reads), an on-policy step reads: the sampled
    tokens (``tolist``), the reward model's last-token index (a check that no row is empty),
    the reward scaler's batch moments (one read for both) and the trainer's one read."""
    counter, _ = _second_step_counted(tmp_path, make_method(name), micro_batch_size=2)
    src = Path(__file__).resolve().parent.parent / "src"
    ours = sorted(site.rsplit(" ", 1)[1] for site, n in counter.sync_sites.items() for _ in range(n)
                  if any((folder / site.split(" at ")[1].split(":")[0]).is_file() for folder in (src, src / "aihf")))
    assert ours == ["_generate_batch", "last_token_index", "train_step", "update"], ours


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pinned, non-blocking copy is the GPU path")
def test_a_batch_reaches_the_gpu_unchanged_through_pinned_non_blocking_copies():
    from aihf.lm.batching import collate, pack

    sequences = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 10]), ([11, 12], [13])]
    for batch in (collate(sequences, 0, scored=True), pack(sequences, 0, scored=True)):
        moved = batch.to("cuda")
        for name, value in vars(batch).items():
            assert getattr(moved, name).is_cuda and torch.equal(getattr(moved, name).cpu(), value), name


class _HostTensors:
    """Records every operator that reads or makes a tensor on the host (CPU) while inputs live
    on another device: such a tensor reaches a GPU through a copy that waits for it."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        seen = self.seen = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
                if any(t.device.type == "cpu" for t in tensors):
                    seen.append(str(func))
                return out

        self.mode = Mode()


@pytest.mark.parametrize("w_demo, w_pref, l2", [(1.0, 1.0, 0.1), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)])
def test_the_objectives_make_nothing_on_the_host(w_demo, w_pref, l2):
    """Given tensors on another device (meta here), the losses are built there: no zero made on
    the host and moved over (on a GPU, a copy that waits for the device)."""
    from aihf import objective

    x = [torch.randn(4, device="meta") for _ in range(8)]
    host = _HostTensors()
    with host.mode:
        losses = [objective.aihf_dpo_loss(*x[:5], beta=0.1, w_demo=w_demo, w_pref=w_pref),
                  objective.self_play_aihf_loss(*x, beta=0.1, w_demo=w_demo, w_pref=w_pref),
                  objective.aihf_reward_loss(*x[:4], w_demo=w_demo, w_pref=w_pref, reward_l2=l2)]
    assert host.seen == [] and all(loss.device.type == "meta" and loss.dim() == 0 for loss in losses)


def test_the_scored_positions_are_made_only_when_asked_and_are_the_response_positions():
    """``scored=True`` (the chunked log-probs) adds ``scored_index``: the flat positions of
    ``loss_mask[:, 1:]`` (padded) and of the packed grid the sums read; without it, nothing is
    built or copied."""
    from aihf.lm.batching import collate, pack

    sequences = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 10]), ([11, 12], [13])]
    padded, packed = collate(sequences, 0, scored=True), pack(sequences, 0, scored=True)
    assert torch.equal(padded.scored_index, padded.loss_mask[:, 1:].reshape(-1).nonzero().squeeze(1))
    assert torch.equal(packed.scored_index, packed.token_index[packed.token_mask.bool()].unique())
    assert collate(sequences, 0).scored_index is None and pack(sequences, 0).scored_index is None
    assert collate(sequences, 0).to("cpu").scored_index is None
