"""PyTorch reference of spec/model.md: the RPR Music Transformer and the Hourglass, written from the spec (not from
the reference project, whose hourglass leaks the future). Parameter names are the reference's state_dict names, so
a C checkpoint loads with load_state_dict(strict=True). Tensors are batch-first (B, T, d) here; names do not
depend on layout. Used by the fixture writer and the speed benchmark; `python3 tests/ref/model.py` runs a
self-check (causality and batch independence on every configuration kind)."""
import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention, PyTorch in_proj layout; with `er_len`, the relative term of model.md §3 (one Er per
    layer, shared by heads). Keys visible to query i: 0 .. n_keys[i]-1."""

    def __init__(self, d, nhead, er_len=None):
        super().__init__()
        self.d, self.h, self.dh = d, nhead, d // nhead
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        self.Er = nn.Parameter(torch.randn(er_len, self.dh) * 0.02) if er_len else None
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, xq, xkv, n_keys, dropout):
        B, Tq, d = xq.shape
        Tk = xkv.shape[1]
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(xq, w[:d], b[:d]) * self.dh ** -0.5
        k = F.linear(xkv, w[d:2 * d], b[d:2 * d])
        v = F.linear(xkv, w[2 * d:], b[2 * d:])
        q, k, v = (t.view(B, -1, self.h, self.dh).transpose(1, 2) for t in (q, k, v))  # (B, H, T, dh)
        s = q @ k.transpose(-1, -2)
        if self.Er is not None:
            assert Tq == Tk
            er = self.Er[self.Er.shape[0] - Tq:]  # a level of length T uses the last T rows
            qe = q @ er.transpose(0, 1)  # (B, H, T, T): qe[i, r] = q_i . Er[L-T+r]
            i = torch.arange(Tq, device=q.device).view(-1, 1)
            j = torch.arange(Tk, device=q.device).view(1, -1)
            idx = (Tq - 1 - i + j).clamp(0, Tq - 1)  # S[i,j] uses Er[L-1-(i-j)] = row T-1-i+j of er
            s = s + qe.gather(-1, idx.expand(B, self.h, Tq, Tk))
        allowed = torch.arange(Tk, device=q.device).view(1, -1) < torch.as_tensor(n_keys, device=q.device).view(-1, 1)
        s = s.masked_fill(~allowed, float("-inf"))
        p = F.dropout(torch.softmax(s, dim=-1), dropout, self.training)
        out = (p @ v).transpose(1, 2).reshape(B, Tq, d)
        return self.out_proj(out)


class Layer(nn.Module):
    """Post-norm layer of model.md §2 (ReLU)."""

    def __init__(self, d, nhead, ff, dropout, er_len=None):
        super().__init__()
        self.self_attn = Attention(d, nhead, er_len)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.p = dropout

    def forward(self, x, ctx=None, n_keys=None):
        ctx = x if ctx is None else ctx
        if n_keys is None:
            n_keys = torch.arange(1, x.shape[1] + 1, device=x.device)  # causal
        drop = lambda t: F.dropout(t, self.p, self.training)
        x = self.norm1(x + drop(self.self_attn(x, ctx, n_keys, self.p)))
        f = self.linear2(drop(F.relu(self.linear1(x))))
        return self.norm2(x + drop(f))


class Block(nn.Module):
    """N layers and a final LayerNorm (model.md §4)."""

    def __init__(self, n, d, nhead, ff, dropout, er_len=None):
        super().__init__()
        self.layers = nn.ModuleList(Layer(d, nhead, ff, dropout, er_len) for _ in range(n))
        self.norm = nn.LayerNorm(d)

    def forward(self, x, ctx=None, n_keys=None):
        for layer in self.layers:
            x = layer(x, ctx, n_keys)
        return self.norm(x), []


class Proj(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.proj = nn.Linear(i, o)


class Hourglass(nn.Module):
    """model.md §6: shift along time, shorten, valley, upsample + residual; coverage-masked resampling."""

    def __init__(self, depth, shorten, d, nhead, ff, dropout, er_len, updown, attn_resampling, save_updown_hidden):
        super().__init__()
        pre, valley, post = depth
        s, rest = (shorten[0], shorten[1:]) if isinstance(shorten, (list, tuple)) else (shorten, shorten)
        self.s, self.updown, self.save = s, updown, save_updown_hidden
        self.pre_transformer = Block(pre, d, nhead, ff, dropout, er_len)
        self.post_transformer = Block(post, d, nhead, ff, dropout, er_len)
        if isinstance(valley, int):
            self.valley_transformer = Block(valley, d, nhead, ff, dropout, er_len)
        else:
            self.valley_transformer = Hourglass(valley, rest if rest else s, d, nhead, ff, dropout, er_len, updown,
                                                attn_resampling, save_updown_hidden)
        if updown == "linear":
            self.downsample, self.upsample = Proj(s * d, d), Proj(d, s * d)
        if attn_resampling:
            self.attn_resampling_pre_valley = Block(1, d, nhead, ff, dropout)
            self.attn_resampling_post_valley = Block(1, d, nhead, ff, dropout)
        else:
            self.attn_resampling_pre_valley = self.attn_resampling_post_valley = None

    def forward(self, x):
        B, T, d = x.shape
        s = self.s
        h, _ = self.pre_transformer(x)
        Tp = -(-T // s) * s
        h = F.pad(h, (0, 0, 0, Tp - T))  # zero rows at the end
        r = h
        hs = F.pad(h, (0, 0, s - 1, 0))[:, :Tp]  # hs[t] = h[t-(s-1)], zeros before: along TIME
        if self.updown == "linear":
            z = self.downsample.proj(hs.reshape(B, Tp // s, s * d))
        else:
            z = hs.reshape(B, Tp // s, s, d).mean(dim=2)
        if self.attn_resampling_pre_valley is not None:
            n_pre = torch.clamp(torch.arange(Tp // s, device=h.device) * s + s, max=Tp)  # row i has seen hs[0 .. s*i+s-1]
            z = z + self.attn_resampling_pre_valley(z, hs, n_pre)[0]
        v, nested = self.valley_transformer(z)
        if self.updown == "linear":
            up = self.upsample.proj(v).reshape(B, Tp, d)
        else:
            up = v.repeat_interleave(s, dim=1)
        u = up + r
        if self.attn_resampling_post_valley is not None:
            n_post = torch.arange(Tp, device=h.device) // s + 1  # position t may see v[0 .. t // s]
            u = u + self.attn_resampling_post_valley(u, v, n_post)[0]
        out, _ = self.post_transformer(u[:, :T])
        hidden = [z] + nested + ([up] if self.save else [])
        return out, hidden


class PositionalEncoding(nn.Module):
    def __init__(self, d, T):
        super().__init__()
        pos = torch.arange(T, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        pe = torch.zeros(T, 1, d)
        pe[:, 0, 0::2] = torch.sin(pos * div)
        pe[:, 0, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)


class Encoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


class Model(nn.Module):
    """cfg: the "model" object of a config (formats.md §6); vocab: V."""

    def __init__(self, cfg, vocab=348):
        super().__init__()
        d, T = cfg["d_model"], cfg["input_length"]
        self.p = cfg.get("dropout", 0.1)
        self.embedding = nn.Embedding(vocab, d, padding_idx=0)
        self.positional_encoding = PositionalEncoding(d, T)
        args = (d, cfg["num_heads"], cfg["dim_feedforward"], self.p, T)
        depth = cfg["depth"]
        if isinstance(depth, int):
            enc = Block(depth, *args)
        else:
            enc = Hourglass(depth, cfg.get("shorten_factor", 2), *args, cfg.get("updown_sample_type", "naive"),
                            cfg.get("attn_resampling", False), cfg.get("save_updown_hidden", True))
        self.transformer = Encoder(enc)
        self.Wout = nn.Linear(d, vocab)

    def forward(self, tok):
        """tok (B, T) -> logits (B, T, V), hidden states (list of (B, T', d))."""
        T = tok.shape[1]
        x = self.embedding(tok) + self.positional_encoding.pe[:T, 0]
        x = F.dropout(x, self.p, self.training)
        h, hidden = self.transformer.encoder(x)
        return self.Wout(h), hidden


def loss(logits, targets, hidden, kind="ce", alpha=None):
    """model.md §7. targets (B, T); PAD (0) targets are ignored everywhere."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)
    if kind == "ce" or not hidden:
        return ce
    if kind == "cosine_ce":
        alpha = 0.1 if alpha is None else alpha
        cos = [F.cosine_similarity(h[:, 0:h.shape[1] // 2 * 2:2], h[:, 1:h.shape[1] // 2 * 2:2], dim=-1).reshape(-1)
               for h in hidden]
        return ce + alpha * torch.cat(cos).mean()
    if kind == "exp_cosine_ce":
        alpha = 1e-6 if alpha is None else alpha
        terms = []
        for h in hidden:
            n = F.normalize(h, dim=-1, eps=1e-8)
            c = n @ n.transpose(1, 2)  # (B, T, T)
            off = ~torch.eye(h.shape[1], dtype=torch.bool)
            terms.append((torch.exp(-c) * off).sum(dim=(1, 2)))  # per batch item
        return ce + alpha * torch.cat(terms).mean()
    raise ValueError(kind)


CONFIGS = {
    "baseline": dict(depth=3),
    "naive": dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="naive"),
    "linear": dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear"),
    "naive_attn": dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="naive", attn_resampling=True),
    "linear_attn": dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
    "nested": dict(depth=[1, [1, 1, 1], 1], shorten_factor=[2, 2], updown_sample_type="linear", attn_resampling=True),
    "s3": dict(depth=[1, 1, 1], shorten_factor=3, updown_sample_type="linear", attn_resampling=True),
}


def self_check():
    torch.manual_seed(0)
    base = dict(input_length=16, num_heads=2, d_model=16, dim_feedforward=32, dropout=0.0)
    worst = 0.0
    for name, extra in CONFIGS.items():
        m = Model({**base, **extra}).double().eval()
        for B in (1, 3):
            for T in (1, 5, 7, 16):
                tok = torch.randint(1, 348, (B, T))
                ref, _ = m(tok)
                for t in range(T):
                    alt = tok.clone()
                    alt[:, t:] = torch.randint(1, 348, (B, T - t))
                    out, _ = m(alt)
                    worst = max(worst, (out[:, :t] - ref[:, :t]).abs().max().item() if t else 0.0)
                if B == 3:  # item 0 alone gives the same logits
                    solo, _ = m(tok[:1])
                    worst = max(worst, (solo - ref[:1]).abs().max().item())
        print(f"{name}: causal and batch-independent so far (max change {worst:.1e})")
    assert worst <= 1e-9, worst
    print("self-check passed")


if __name__ == "__main__":
    self_check()
