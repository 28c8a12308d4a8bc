"""Model FLOPs per example and the device's peak matmul rate, for model FLOPs utilisation (MFU).

MFU = (model FLOPs of the training actually done) / train time / (peak matmul FLOP/s of the device).

Model FLOPs are counted, not estimated: torch's FlopCounterMode records every matmul of one forward and
backward pass of the model as it will train, on unpadded probe sequences. Autograd computes no weight
gradient for a frozen weight and no input gradient where nothing upstream trains, so the count is what the
method really needs (LoRA's backward skips the frozen weights' gradients; feature extraction has no backward
through the encoder at all). Padding and activation recomputation (gradient checkpointing) are not model
FLOPs: padded tokens do no useful work, so the count uses each example's real length.

For a transformer encoder the FLOPs of one sequence of L tokens are exactly c0 + c1*L + c2*L^2 (per-sequence
head, per-token linear layers, and attention's L x L products), so three probe lengths give the coefficients.

    python -m ftbench.flops    # the peak matmul rates (fp32, bf16) of this machine's CPU (and GPU, if there is one)
"""

from __future__ import annotations

import quiet_imports  # noqa: F401  (first: silences third-party start-up lines)

import time

import torch

from logger_callback import synchronize

PROBE_LENGTHS = (8, 16, 32)


def _attention_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # The gradients of the two products (scores and values) are four products of the same sizes. Fused kernels
    # also recompute the scores, but recomputation is the kernel's cost, not the model's.
    from torch.utils.flop_counter import sdpa_flop_count

    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_formulas() -> dict:
    """Model-FLOPs formulas for the fused attention kernels: torch 2.13's counter has none for the CPU kernel
    (attention would count as zero) and counts the backward's recomputation for the GPU ones, so that the
    count would depend on the kernel the dispatcher picked. The unfused path is counted as matmuls anyway."""
    aten = torch.ops.aten
    names = {
        "_scaled_dot_product_flash_attention_for_cpu": _attention_forward,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _attention_backward,
        "_scaled_dot_product_flash_attention_backward": _attention_backward,
        "_scaled_dot_product_efficient_attention_backward": _attention_backward,
        "_scaled_dot_product_cudnn_attention_backward": _attention_backward,
    }
    return {getattr(aten, name): formula for name, formula in names.items() if hasattr(aten, name)}


def count_training_flops(model: torch.nn.Module, length: int, device: torch.device, token_id: int = 1000) -> int:
    """Matmul FLOPs of one forward and backward pass of a single sequence of `length` real tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    input_ids = torch.full((1, length), token_id, dtype=torch.long, device=device)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
             "labels": torch.zeros(1, dtype=torch.long, device=device)}
    with FlopCounterMode(display=False, custom_mapping=_attention_formulas()) as counter:
        loss = model(**batch).loss
        if loss.requires_grad:  # nothing trainable upstream of the loss: forward only
            loss.backward()
    return int(counter.get_total_flops())


def flops_coefficients(model: torch.nn.Module, device: torch.device) -> dict:
    """c0, c1, c2 with FLOPs(L) = c0 + c1*L + c2*L^2 for one training example of L tokens.

    The model is probed in eval mode (dropout changes no FLOPs), with the random state saved and restored and
    the probe's gradients discarded, so that training afterwards is exactly as it would have been.
    """
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            counts = [count_training_flops(model, length, device)
                      for length in PROBE_LENGTHS]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    # Exact solution of the 3x3 Vandermonde system; integer counts make the coefficients exact rationals.
    (l1, l2, l3), (f1, f2, f3) = PROBE_LENGTHS, counts
    d12 = (f2 - f1) / (l2 - l1)
    d23 = (f3 - f2) / (l3 - l2)
    c2 = (d23 - d12) / (l3 - l1)
    c1 = d12 - c2 * (l1 + l2)
    c0 = f1 - c1 * l1 - c2 * l1 * l1
    return {"c0": c0, "c1": c1, "c2": c2, "probe_lengths": list(PROBE_LENGTHS), "probe_flops": counts}


def model_flops(coefficients: dict, num_sequences: int, sum_lengths: int, sum_squared_lengths: int) -> float:
    """Total model FLOPs of training on sequences with these length statistics."""
    return (coefficients["c0"] * num_sequences + coefficients["c1"] * sum_lengths
            + coefficients["c2"] * sum_squared_lengths)


SMALLEST_PROBE_SIZE = 256
LARGEST_PROBE_SIZE = {"cuda": 8192, "cpu": 2048}
SATURATING_CALL_S = 0.1  # a matmul this long keeps every core busy; a larger one only lengthens the probe


def saturating_size(seconds_per_call, largest: int) -> int:
    """The probe's matmul size: doubled from SMALLEST_PROBE_SIZE until one call takes SATURATING_CALL_S or the
    size reaches `largest`. A CPU without native bf16 emulates it at about 1 GFLOP/s: there a 2048 matmul takes
    over a minute and the probe held a two-step run for 12 minutes; at the size this picks it takes seconds."""
    size = SMALLEST_PROBE_SIZE
    while size < largest and seconds_per_call(size) < SATURATING_CALL_S:
        size *= 2
    return size


def matmul_seconds(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> float:
    """Seconds of one a @ b on the device, finished (CUDA synchronised) before the clock is read."""
    start = time.perf_counter()
    torch.matmul(a, b)
    synchronize(device)
    return time.perf_counter() - start


def random_square(size: int, device: torch.device, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(size, size, device=device, dtype=dtype, generator=generator)


def timed_matmul(device: torch.device, dtype: torch.dtype, size: int, generator: torch.Generator) -> float:
    """Seconds of one size x size matmul, after one warm-up call (the first call of a size sets up its kernel)."""
    a, b = random_square(size, device, dtype, generator), random_square(size, device, dtype, generator)
    matmul_seconds(a, b, device)
    return matmul_seconds(a, b, device)


def peak_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
                      repeats: int = 10) -> dict:
    """The best rate of a square matmul of `size` on this device in this dtype (FLOP/s), measured now.

    The best of several timed calls after two warm-up ones: that is the most the hardware gives this process,
    the honest denominator for utilisation (a datasheet peak is higher than any real kernel reaches). The best,
    not the mean, because on a shared machine single calls are slowed by others, never sped up (best of 3
    varied from 78 to 181 GFLOP/s between runs on the 2-core CPU here). Without a size, saturating_size picks it.
    Its random matrices come from a generator of its own: training after it draws what it would have drawn
    without it, however many sizes the probe tried (which depends on the device's speed).
    """
    generator = torch.Generator(device=device).manual_seed(0)
    largest = LARGEST_PROBE_SIZE["cuda" if device.type == "cuda" else "cpu"]
    size = size or saturating_size(lambda n: timed_matmul(device, dtype, n, generator), largest)
    a, b = random_square(size, device, dtype, generator), random_square(size, device, dtype, generator)
    for _ in range(2):
        matmul_seconds(a, b, device)
    best = min(matmul_seconds(a, b, device) for _ in range(repeats))
    del a, b
    return {"peak_matmul_flops_per_s": 2 * size**3 / best, "matmul_size": size,
            "dtype": str(dtype).replace("torch.", ""), "repeats": repeats, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description="Measure the peak matmul rate of this machine's CPU (and GPU, if there is "
                                        "one), as MFU uses it.").parse_args()
    for name in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for dtype in (torch.float32, torch.bfloat16):  # bf16 on a CPU without native bf16 is emulated: slow
            peak = peak_matmul_flops(torch.device(name), dtype)
            print(f"{name} {peak['dtype']}: {peak['peak_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s "
                  f"({peak['matmul_size']}x{peak['matmul_size']} matmul, {peak['threads']} threads)")
