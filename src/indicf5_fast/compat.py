"""A one-line switch for code written against IndicF5's own model (``INF5Model``).

Before (IndicF5's reference script and its server's ``TTSManager``)::

    from transformers import AutoModel
    model = AutoModel.from_pretrained("ai4bharat/IndicF5", trust_remote_code=True, revision=REVISION).to(DEVICE)
    audio = model(text, ref_audio_path="ref.wav", ref_text="...")   # int16, 24 kHz

After::

    import indicf5_fast
    model = indicf5_fast.IndicF5.from_pretrained("ai4bharat/IndicF5", trust_remote_code=True, revision=REVISION).to(DEVICE)
    audio = model(text, ref_audio_path="ref.wav", ref_text="...")   # the same: int16, 24 kHz

``__call__`` returns what ``INF5Model.forward`` returns: the 24 kHz synthesis written as 16-bit
PCM, long silences removed (``remove_silence``, IndicF5's config.json ``remove_sil`` = true) and
normalised to -20 dBFS (``frontend.audio.postprocess_indicf5``), as an int16 numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from indicf5_fast.config import SAMPLE_RATE, EngineConfig
from indicf5_fast.engine import TTS
from indicf5_fast.frontend.audio import postprocess_indicf5


class IndicF5:
    """IndicF5's ``INF5Model`` interface on the fast engine (``self.tts``)."""

    sampling_rate = SAMPLE_RATE

    def __init__(self, tts: TTS, remove_silence: bool = True):
        self.tts = tts
        self.remove_silence = remove_silence

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str = "ai4bharat/IndicF5",
        revision: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        backend: str = "torch",
        trust_remote_code: bool | None = None,
        remove_silence: bool = True,
        **engine_options: Any,
    ) -> IndicF5:
        """Load a hub id (at ``revision``) or a local IndicF5-layout directory. ``engine_options``
        are EngineConfig / SamplingOptions fields (e.g. ``nfe_step=7, schedule="epss"``).
        ``trust_remote_code`` is accepted and ignored: no code from the hub is run."""
        del trust_remote_code  # IndicF5's line passes it; nothing remote is executed here
        config = EngineConfig(model=str(repo_or_dir), revision=revision, device=device, dtype=dtype, backend=backend)
        # the engine returns plain float audio; __call__ applies IndicF5's int16 tail itself
        config = config.replace(**engine_options, remove_silence=False)
        return cls(TTS.from_config(config), remove_silence=remove_silence)

    @property
    def device(self) -> torch.device:
        return self.tts.backend.device

    def to(self, device: str | torch.device) -> IndicF5:
        """Same device: ``self`` (the usual ``from_pretrained(...).to(DEVICE)`` line costs nothing).
        Another device: the engine is built again there (the weights are loaded again)."""
        from indicf5_fast.backends import resolve_device

        target = resolve_device(str(device))
        here = self.device
        if target.type == here.type and (target.index or 0) == (here.index or 0):
            return self
        self.tts = TTS.from_config(self.tts.config.replace(device=str(target)))
        return self

    def eval(self) -> IndicF5:  # nn.Module habit in INF5Model scripts: inference only here anyway
        return self

    def __call__(
        self, text: str, ref_audio_path: Any, ref_text: str, seed: int | None = None, **sampling: Any
    ) -> np.ndarray:
        """text + reference (path, bytes, array or (array, rate)) + its transcript -> int16 [n]
        at 24 kHz, exactly INF5Model.forward's output. ``seed`` and ``sampling`` (nfe_step, speed,
        ...) are optional extras; IndicF5 itself draws fresh noise every call (seed None)."""
        wave = self.tts.synthesize(text, ref_audio_path, ref_text, seed=seed, **sampling)
        return postprocess_indicf5(wave, SAMPLE_RATE, remove_silence=self.remove_silence)
