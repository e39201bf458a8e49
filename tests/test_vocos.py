"""Vocos decoder: key/shape equality and decode parity with the ``vocos`` package, the
matmul ISTFT against torch.istft, and ONNX export of the decoder run in onnxruntime."""

from __future__ import annotations

import pytest
import torch

from indicf5_fast.model.init import init_random_vocos_
from indicf5_fast.model.mel import mel_filterbank
from indicf5_fast.model.vocos import (
    ISTFT,
    Vocos,
    VocosArgs,
    vocos_key_names,
    vocos_state_shapes,
)
from upstream_oracle import vocos_package

ARGS = {"tiny": VocosArgs.tiny(), "full": VocosArgs()}


def _package_vocos(args: VocosArgs, tmp_path):
    """The ``vocos`` package's model from a config.yaml shaped like vocos-mel-24khz's."""
    vocos = vocos_package()
    cfg = f"""
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {{sample_rate: {args.sample_rate}, n_fft: {args.n_fft}, hop_length: {args.hop_length},
              n_mels: {args.input_channels}, padding: center}}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {{input_channels: {args.input_channels}, dim: {args.dim},
              intermediate_dim: {args.intermediate_dim}, num_layers: {args.num_layers}}}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {{dim: {args.dim}, n_fft: {args.n_fft}, hop_length: {args.hop_length}, padding: center}}
"""
    path = tmp_path / "config.yaml"
    path.write_text(cfg)
    return vocos.Vocos.from_hparams(str(path)).eval()


def _ours(args: VocosArgs, seed: int = 0, istft_impl: str = "torch") -> Vocos:
    return init_random_vocos_(Vocos(args, istft_impl=istft_impl), torch.Generator().manual_seed(seed)).eval()


def _mel(b: int, n: int, seed: int = 1) -> torch.Tensor:
    # log-mel-like values (IndicF5 mels sit roughly in [-11, 3])
    return torch.randn(b, 100, n, generator=torch.Generator().manual_seed(seed)) * 2.0 - 4.0


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_keys_and_shapes_match_vocos_package(size: str, tmp_path) -> None:
    args = ARGS[size]
    ref = _package_vocos(args, tmp_path)
    ours = Vocos(args)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd) == vocos_key_names(args)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == vocos_state_shapes(args)
    assert {k: v.shape for k, v in our_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    if size == "full":
        assert len(our_sd) == 83
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_decode_matches_vocos_package(size: str, tmp_path) -> None:
    args = ARGS[size]
    ours = _ours(args)
    ref = _package_vocos(args, tmp_path)
    ref.load_state_dict(ours.state_dict(), strict=True)  # proves key equality
    mel = _mel(2, 50)
    with torch.no_grad():
        got = ours.decode(mel)
    want = ref.decode(mel)
    assert got.shape == (2, 49 * args.hop_length)
    assert got.abs().max() > 1e-3, "degenerate weights: output is ~0"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the same for the ONNX-friendly ISTFT
    ours.istft_impl = "matmul"
    with torch.no_grad():
        torch.testing.assert_close(ours.decode(mel), want, atol=1e-5, rtol=1e-5)


def test_feature_extractor_matches_vocos_package(tmp_path) -> None:
    args = VocosArgs.tiny()
    ours = _ours(args)
    ref = _package_vocos(args, tmp_path)
    ref.load_state_dict(ours.state_dict(), strict=True)
    wave = torch.randn(2, 6000, generator=torch.Generator().manual_seed(3)) * 0.1
    torch.testing.assert_close(
        ours.feature_extractor(wave), ref.feature_extractor(wave), atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize("n", [2, 7, 64])  # n = 1 gives 0 samples; torch.istft rejects it
def test_matmul_istft_equals_torch_istft(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    istft = ISTFT(1024, 256)
    # arbitrary spectra, including non-zero imaginary parts at DC and Nyquist (which a real
    # inverse transform must ignore)
    re, im = torch.randn(2, 513, n, generator=g), torch.randn(2, 513, n, generator=g)
    want = istft(re, im)
    istft.impl = "matmul"
    got = istft(re, im)
    assert got.shape == want.shape == (2, (n - 1) * 256)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_istft_impl_is_validated() -> None:
    with pytest.raises(ValueError):
        Vocos(VocosArgs.tiny(), istft_impl="fft")
    v = Vocos(VocosArgs.tiny())
    with pytest.raises(ValueError):
        v.istft_impl = "cuda"
    v.istft_impl = "matmul"
    assert v.head.istft.impl == "matmul"
    with pytest.raises(ValueError):
        ISTFT(1024, 300)


def test_onnx_export_runs_in_onnxruntime_on_two_lengths(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = _ours(VocosArgs.tiny(), istft_impl="matmul")
    # example batch 2: a batch of 1 would be specialised to a constant by the exporter
    b, n = torch.export.Dim("b", min=1, max=64), torch.export.Dim("n", min=2, max=8192)
    prog = torch.onnx.export(
        model,
        (_mel(2, 16),),
        dynamo=True,
        dynamic_shapes={"mel": {0: b, 2: n}},
        input_names=["mel"],
        output_names=["wave"],
        verbose=False,
    )
    path = tmp_path / "vocos.onnx"
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.istft_impl = "torch"  # compare against the reference path
    for batch, frames in [(1, 23), (2, 61)]:
        mel = _mel(batch, frames, seed=frames)
        (got,) = sess.run(["wave"], {"mel": mel.numpy()})
        with torch.no_grad():
            want = model.decode(mel)
        assert got.shape == (batch, (frames - 1) * 256)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_args_from_state_dict(size: str) -> None:
    args = ARGS[size]
    shapes = vocos_state_shapes(args)
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert VocosArgs.from_state_dict(sd) == args
    # checkpoint prefixes (IndicF5 wraps the vocoder in torch.compile) are found, not assumed
    assert VocosArgs.from_state_dict({"vocoder._orig_mod." + k: v for k, v in sd.items()}) == args
    assert VocosArgs.from_state_dict(sd, hop_length=128).hop_length == 128
    with pytest.raises(KeyError):
        VocosArgs.from_state_dict({"transformer.proj_out.weight": torch.empty(1)})


def test_init_random_is_seeded_nondegenerate_and_keeps_buffers() -> None:
    args = VocosArgs.tiny()
    a, b, c = _ours(args, seed=5), _ours(args, seed=5), _ours(args, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=0, rtol=0)
    params = dict(a.named_parameters())
    assert all(p.abs().min() > 0 or p.std() > 0 for p in params.values())
    assert all(not torch.equal(params[k], dict(c.named_parameters())[k]) for k in params)
    for i in range(args.num_layers):
        assert bool((a.backbone.convnext[i].gamma.abs() > 0.01).all()), "layer scale must be on"
    hann = torch.hann_window(args.n_fft)
    torch.testing.assert_close(sa["head.istft.window"], hann, atol=0, rtol=0)
    torch.testing.assert_close(sa["feature_extractor.mel_spec.spectrogram.window"], hann, atol=0, rtol=0)
    torch.testing.assert_close(
        sa["feature_extractor.mel_spec.mel_scale.fb"], mel_filterbank(), atol=0, rtol=0
    )
    assert sc.keys() == sa.keys()
