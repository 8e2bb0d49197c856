"""Training FLOPs per token and model FLOPs utilisation (MFU), in the two usual conventions.

    6N            6 x parameters per token (forward 2N, backward 4N): Kaplan et al. 2020,
                  the figure HF's SmolLM and llm.c report. N counts every weight once; with
                  tied embeddings the matrix is the LM head's, which is a real matmul.
    6N + attn     plus the attention score and value matmuls, 12 x layers x hidden x seq per
                  token (PaLM, Chowdhery et al. 2022, appendix B), which 6N leaves out and
                  which grows with the sequence: at 2048 tokens it adds ~50% for SmolLM2-135M.

MFU = achieved FLOPs per second / the device's dense peak at the training precision.
"""

from __future__ import annotations

# Dense (no sparsity) peak tensor-core FLOPs per second, per GPU, from the vendors' data sheets.
PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},  # SXM; the PCIe card is 756e12 bf16
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 30e12},
    "A10G": {"bf16": 70e12, "fp16": 70e12, "fp32": 31e12},
}


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int) -> dict[str, float]:
    """Training FLOPs per token in both conventions."""
    six_n = 6.0 * n_params
    return {"6n": six_n, "6n_attn": six_n + 12.0 * n_layers * hidden * seq_len}


def peak_flops(device_name: str, precision: str) -> float | None:
    """The dense peak of a GPU named like torch.cuda.get_device_name() ('NVIDIA H100 80GB HBM3')."""
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        return {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}.get(precision)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return peaks.get(precision)
    return None


def mfu(tokens_per_s: float, per_token: dict[str, float], peak: float | None, devices: int = 1) -> dict[str, float]:
    """MFU in both conventions for a run moving `tokens_per_s` over `devices` GPUs; {} without a peak."""
    if not peak or not tokens_per_s:
        return {}
    return {f"mfu_{k}": tokens_per_s * v / (peak * devices) for k, v in per_token.items()}
