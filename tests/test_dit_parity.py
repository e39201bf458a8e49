"""DiT forward parity against upstream f5-tts on seeded non-degenerate random weights."""

from __future__ import annotations

import pytest
import torch

from indicf5_fast.model.dit import DiT, DiTArgs
from indicf5_fast.model.init import init_random_
from upstream_oracle import f5_model


def build_pair(flavour: str, attn_mask: bool = True):
    up = f5_model()
    args = DiTArgs.tiny(vocab_size=40, flavour=flavour)
    ours = init_random_(DiT(args), torch.Generator().manual_seed(0)).eval()
    theirs = up.DiT(
        dim=args.dim,
        depth=args.depth,
        heads=args.heads,
        dim_head=args.dim_head,
        ff_mult=args.ff_mult,
        mel_dim=args.mel_dim,
        text_num_embeds=args.vocab_size,
        text_dim=args.text_dim,
        conv_layers=args.conv_layers,
        text_mask_padding=args.text_mask_padding,
        pe_attn_head=args.pe_attn_head,
        attn_mask_enabled=attn_mask,
        dropout=0.0,
    ).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize("flavour", ["v0", "v1"])
@pytest.mark.parametrize("uncond", [False, True])
def test_dit_forward_single(flavour, uncond):
    ours, theirs = build_pair(flavour)
    g = torch.Generator().manual_seed(1)
    n = 37
    x, cond = torch.randn(1, n, 100, generator=g), torch.randn(1, n, 100, generator=g)
    text = torch.randint(0, 40, (1, 20), generator=g)
    t = torch.tensor([0.3])
    with torch.no_grad():
        ref = theirs(x, cond, text, t, drop_audio_cond=uncond, drop_text=uncond)
        emb = ours.embed_text(text, n, drop_text=uncond)
        out = ours(x, torch.zeros_like(cond) if uncond else cond, emb, t)
    assert ref.abs().max() > 1e-3, "degenerate weights: upstream output is ~0"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flavour", ["v0", "v1"])
def test_dit_forward_batch_with_mask(flavour):
    ours, theirs = build_pair(flavour, attn_mask=True)
    g = torch.Generator().manual_seed(2)
    lens = torch.tensor([41, 29, 35])
    n = int(lens.max())
    mask = torch.arange(n)[None] < lens[:, None]
    x, cond = torch.randn(3, n, 100, generator=g), torch.randn(3, n, 100, generator=g)
    text = torch.randint(0, 40, (3, 25), generator=g)
    text[1, 18:] = -1  # batch padding
    t = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        ref = theirs(x, cond, text, t, mask=mask, cfg_infer=True)
        emb_c = ours.embed_text(text, lens)
        emb_u = ours.embed_text(text, lens, drop_text=True)
        out = ours(
            torch.cat([x, x]),
            torch.cat([cond, torch.zeros_like(cond)]),
            torch.cat([emb_c, emb_u]),
            torch.cat([t, t]),
            torch.cat([mask, mask]),
        )
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_state_dict_matches_upstream_keys_full_size():
    up = f5_model()
    args = DiTArgs.base(vocab_size=2545)
    with torch.device("meta"):
        ours = DiT(args)
        theirs = up.DiT(
            dim=1024,
            depth=22,
            heads=16,
            ff_mult=2,
            text_dim=512,
            text_num_embeds=2545,
            conv_layers=4,
            text_mask_padding=False,
            pe_attn_head=1,
        )
    a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert a == b
    assert len(a) == 364
