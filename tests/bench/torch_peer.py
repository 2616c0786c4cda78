#!/usr/bin/python3
"""PyTorch peer for mtp's training benchmark.

The same model mtp trains, written as a plain, idiomatic PyTorch (CPU)
implementation, so tokens/s and peak memory can be compared against the
C trainer.

Model: Llama-style decoder, no biases anywhere.
  * token embedding (V x D), not tied to the unembedding
  * L trunk blocks, pre-norm:
        x = x + Wo . attn(RMSNorm(x))
        x = x + W2 . (silu(W1 . RMSNorm(x)) * W3 . RMSNorm(x))
    RMSNorm with learned weight, eps 1e-5; H heads of dim D/H, causal,
    RoPE (base 10000, rotating pairs (2i, 2i+1) within each head) on q, k;
    scores scaled by 1/sqrt(D/H); explicit softmax(QK^T) with a causal mask
    (PyTorch 1.13 has no scaled_dot_product_attention).
  * n output heads: head i is one more block of the same structure, all fed
    the same trunk output z; one shared final RMSNorm and one shared
    unembedding (V x D) produce each head's logits.
  * Loss: head i (1-based) at position t predicts token t+i. Rows are T+1
    tokens (inputs = first T). Head i uses positions t = 0..T-i. Loss = sum
    over heads of that head's mean cross-entropy. One backward.
  * AdamW(lr 1e-3, betas (0.9, 0.95), weight_decay 0.1), grad-norm clip 1.0.
Reference config (the defaults): V=256 D=256 L=4 H=8 F=688 T=256 B=16 n=4,
6,459,648 parameters.

Setup (Debian 12):
    apt-get install -y python3-torch        # PyTorch 1.13, CPU
Run with /usr/bin/python3 (Debian's interpreter, the one that sees torch).

Usage:
    /usr/bin/python3 tests/bench/torch_peer.py [--threads P]
        [--precision fp32|bf16] [--heads N] [--steps S] [--warmup-steps W]
        [--data PATH] [--vocab V] [--dim D] [--layers L] [--n-heads-attn H]
        [--ffn F] [--seq T] [--batch B] [--seed S]

  --precision bf16 wraps forward + loss in
      torch.autocast(device_type="cpu", dtype=torch.bfloat16)
  (weights, gradients and optimizer state stay fp32).
  --data PATH takes random windows of T+1 bytes from the file (vocab must be
  256 then); without it tokens are uniform random in [0, V).

Output: one JSON object on stdout (tokens/s from the median timed step, plus
min/max, parameter count, peak RSS in MiB = ru_maxrss/1024 read at the end),
and a readable summary on stderr. Peak RSS is per process, so run one
configuration per process, e.g.:

    timeout 600 /usr/bin/python3 tests/bench/torch_peer.py --threads 1 --precision bf16 --heads 4
    timeout 600 /usr/bin/python3 tests/bench/torch_peer.py --threads 2 --precision bf16 --heads 4
    timeout 600 /usr/bin/python3 tests/bench/torch_peer.py --threads 1 --precision bf16 --heads 1
    timeout 900 /usr/bin/python3 tests/bench/torch_peer.py --threads 1 --precision fp32 --steps 2 --warmup-steps 1
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(seq, head_dim, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(seq, dtype=torch.float32), inv)  # (T, hd/2)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    # x: (B, H, T, hd); rotate pairs (2i, 2i+1)
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xs[..., 0], xs[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.h = n_heads
        self.hd = dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        q = self.wq(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, t, self.h, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, t, self.h, self.hd).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att.float(), dim=-1).type_as(v)
        y = att @ v
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.wo(y)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, dim, n_heads, hidden):
        super().__init__()
        self.attn_norm = RMSNorm(dim)
        self.attn = Attention(dim, n_heads)
        self.ffn_norm = RMSNorm(dim)
        self.ffn = FeedForward(dim, hidden)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        x = x + self.ffn(self.ffn_norm(x))
        return x


class MTPModel(nn.Module):
    def __init__(self, vocab, dim, layers, n_heads_attn, hidden, seq, n_out):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, dim)
        self.trunk = nn.ModuleList(Block(dim, n_heads_attn, hidden) for _ in range(layers))
        self.heads = nn.ModuleList(Block(dim, n_heads_attn, hidden) for _ in range(n_out))
        self.norm = RMSNorm(dim)
        self.unembed = nn.Linear(dim, vocab, bias=False)
        cos, sin = rope_tables(seq, dim // n_heads_attn)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx):
        """idx: (B, T) -> list of n logits tensors, each (B, T, V)."""
        t = idx.shape[1]
        cos, sin, mask = self.cos[:t], self.sin[:t], self.mask[:t, :t]
        x = self.tok_emb(idx)
        for blk in self.trunk:
            x = blk(x, cos, sin, mask)
        z = x
        return [self.unembed(self.norm(h(z, cos, sin, mask))) for h in self.heads]


def mtp_loss(logits_list, tokens):
    """tokens: (B, T+1). Head i (1-based) at t predicts tokens[:, t+i], t = 0..T-i."""
    T = tokens.shape[1] - 1
    total = 0.0
    for i, logits in enumerate(logits_list, start=1):
        n = T - i + 1  # positions 0..T-i
        if n <= 0:
            continue
        lg = logits[:, :n, :]
        tg = tokens[:, i:i + n]
        total = total + F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tg.reshape(-1))
    return total


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU peer for the mtp trainer benchmark")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--heads", type=int, default=4, help="number of MTP output heads n")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--data", default=None, help="file of bytes to sample windows from")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--n-heads-attn", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    V, D, T, B = args.vocab, args.dim, args.seq, args.batch

    if args.data:
        if V != 256:
            sys.exit("--data reads bytes: --vocab must be 256")
        with open(args.data, "rb") as f:
            raw = f.read()
        if len(raw) < T + 1:
            sys.exit("--data file shorter than T+1 bytes")
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)

        def get_batch():
            starts = torch.randint(0, len(raw) - T, (B,))
            return torch.stack([data[s:s + T + 1] for s in starts.tolist()]).long()
    else:
        def get_batch():
            return torch.randint(0, V, (B, T + 1), dtype=torch.long)

    model = MTPModel(V, D, args.layers, args.n_heads_attn, args.ffn, T, args.heads)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    use_bf16 = args.precision == "bf16"

    def step():
        tokens = get_batch()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(tokens[:, :T])
            loss = mtp_loss(logits, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, precision {args.precision}, "
          f"n={args.heads}, V={V} D={D} L={args.layers} H={args.n_heads_attn} F={args.ffn} T={T} B={B}, "
          f"params {n_params:,}", file=sys.stderr)

    for i in range(args.warmup_steps):
        t0 = time.perf_counter()
        loss = step()
        print(f"  warmup {i}: {time.perf_counter() - t0:.3f}s loss {loss:.4f}", file=sys.stderr)
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"  step {i}: {dt:.3f}s loss {loss:.4f} ({B * T / dt:.0f} tok/s)", file=sys.stderr)

    toks = B * T
    med = statistics.median(times)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = {
        "impl": "torch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "heads": args.heads,
        "vocab": V, "dim": D, "layers": args.layers, "attn_heads": args.n_heads_attn,
        "ffn": args.ffn, "seq": T, "batch": B,
        "data": args.data or "random",
        "params": n_params,
        "steps": args.steps, "warmup_steps": args.warmup_steps,
        "step_s_median": med, "step_s_min": min(times), "step_s_max": max(times),
        "tokens_per_s": toks / med,
        "tokens_per_s_min": toks / max(times),
        "tokens_per_s_max": toks / min(times),
        "final_loss": loss,
        "peak_rss_mib": rss_mib,
    }
    print(json.dumps(res))
    print(f"{args.precision} threads={res['threads']} n={args.heads}: {res['tokens_per_s']:.0f} tok/s "
          f"(min {res['tokens_per_s_min']:.0f}, max {res['tokens_per_s_max']:.0f}), "
          f"step {med:.3f}s median, params {n_params:,}, peak RSS {rss_mib:.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
