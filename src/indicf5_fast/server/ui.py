"""The web playground: a Gradio Blocks app mounted at ``/ui`` in the API's own FastAPI app.

It owns no model and no limits of its own: every action goes through the same ``SpeechService``
calls as the HTTP routes (voices, text and upload checks, the batcher's admission and batching,
metrics), so a page request is batched with API requests and a fixed seed gives the API's exact
WAV bytes. ``/ui/*`` is exempt from the Bearer middleware (a browser cannot send that header); with
an API key set, Gradio's login page asks for it instead (any user name, the key as the password).

Offline by construction: analytics and the version check are off, the theme names system fonts
only (no web-font stylesheet), SSR, MCP and the run history are off.

Gradio is an optional extra (``pip install 'indicf5-fast[ui]'``) imported only by ``mount_ui``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from indicf5_fast.config import PRESETS
from indicf5_fast.errors import IndicF5Error
from indicf5_fast.server.errors import ApiError, from_engine_error
from indicf5_fast.server.settings import UI_PATH

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

    from indicf5_fast.server.service import SpeechService
    from indicf5_fast.server.settings import ServerSettings

log = logging.getLogger("indicf5_fast.server")

ROUTE = "/ui"  # metrics label of synthesis started from the page or its API

# One short example per language IndicF5 was trained on (the 11 of its model card).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Assamese", "নমস্কাৰ, আপুনি কেনে আছে? আজি বতৰ বৰ ভাল।"),
    ("Bengali", "নমস্কার, আপনি কেমন আছেন? আজ আবহাওয়া খুব সুন্দর।"),
    ("Gujarati", "નમસ્તે, તમે કેમ છો? આજે હવામાન ખૂબ સરસ છે."),
    ("Hindi", "नमस्ते, आप कैसे हैं? आज मौसम बहुत सुहावना है।"),
    ("Kannada", "ನಮಸ್ಕಾರ, ನೀವು ಹೇಗಿದ್ದೀರಿ? ಇಂದು ಹವಾಮಾನ ತುಂಬಾ ಚೆನ್ನಾಗಿದೆ."),
    ("Malayalam", "നമസ്കാരം, സുഖമാണോ? ഇന്ന് കാലാവസ്ഥ വളരെ നല്ലതാണ്."),
    ("Marathi", "नमस्कार, तुम्ही कसे आहात? आज हवामान खूप छान आहे."),
    ("Odia", "ନମସ୍କାର, ଆପଣ କେମିତି ଅଛନ୍ତି? ଆଜି ପାଣିପାଗ ବହୁତ ସୁନ୍ଦର।"),
    ("Punjabi", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ, ਤੁਸੀਂ ਕਿਵੇਂ ਹੋ? ਅੱਜ ਮੌਸਮ ਬਹੁਤ ਵਧੀਆ ਹੈ।"),
    ("Tamil", "வணக்கம், எப்படி இருக்கிறீர்கள்? இன்று வானிலை மிகவும் நன்றாக உள்ளது."),
    ("Telugu", "నమస్కారం, మీరు ఎలా ఉన్నారు? ఈ రోజు వాతావరణం చాలా బాగుంది."),
)

# System fonts only: a theme font given as a plain name never makes Gradio add a stylesheet link.
FONTS = ("Noto Sans", "Noto Sans Devanagari", "Noto Sans Bengali", "system-ui", "sans-serif")
MONO_FONTS = ("Noto Sans Mono", "ui-monospace", "monospace")
CSS = "#indicf5-stats { min-height: 2.5em; } footer { opacity: 0.6; }"

# magma-like colour ramp for the spectrogram (position, RGB)
_RAMP = np.array(
    [
        [0.00, 0, 0, 4],
        [0.20, 59, 15, 112],
        [0.45, 140, 41, 129],
        [0.65, 222, 73, 104],
        [0.85, 254, 159, 109],
        [1.00, 252, 253, 191],
    ],
    dtype=np.float64,
)


class UiError(Exception):
    """A reason to show the user (mapped to ``gr.Error`` at the edge of each handler)."""


def message_of(e: BaseException) -> str:
    """The one-line text a page shows for a failure: the API's reason, never a traceback."""
    if isinstance(e, ApiError):
        if e.status == 503:
            return f"Server busy: {e.message} (try again in a moment)"
        if e.status == 504:
            return f"Timed out: {e.message}"
        return e.message
    if isinstance(e, IndicF5Error):
        return from_engine_error(e).message
    if isinstance(e, UiError):
        return str(e)
    if isinstance(e, OSError):
        return f"cannot read the audio file: {e.strerror or e}"
    return f"synthesis failed: {type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------- audio helpers
def wav_bytes(pcm: np.ndarray, sample_rate: int, fmt: str = "WAV") -> bytes:
    """int16 samples -> a WAV/FLAC file (16-bit mono), as the HTTP API encodes them."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, dtype=np.int16), sample_rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def spectrogram_image(pcm: np.ndarray, mel: Any, top_db: float = 80.0) -> np.ndarray:
    """int16 audio -> log-mel picture [2*n_mels, frames, 3] uint8, low frequencies at the bottom."""
    import torch

    x = torch.from_numpy(np.asarray(pcm, dtype=np.float32) / 32768.0)[None]
    with torch.inference_mode():
        m = mel(x)[0].numpy()  # [n_mels, frames], natural log
    hi = float(m.max()) if m.size else 0.0
    span = top_db / (20.0 / np.log(10.0))  # dB range in natural-log units
    v = np.clip((m - (hi - span)) / span, 0.0, 1.0)[::-1]
    rgb = np.stack([np.interp(v, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)], axis=-1)
    return np.repeat(rgb.astype(np.uint8), 2, axis=0)


# ---------------------------------------------------------------------------------- the playground
class Playground:
    """Handlers of the page and of its ``/synthesize`` API; all work goes through ``service``."""

    def __init__(self, service: SpeechService, settings: ServerSettings, streaming: bool = True):
        from indicf5_fast.model.mel import MelSpectrogram

        self.service, self.settings = service, settings
        self.streaming = streaming  # False: the player gets the whole result at the end
        self.sample_rate = service.sample_rate
        self.mel = MelSpectrogram(sample_rate=self.sample_rate).eval()
        self.cache_dir: str | None = None  # Gradio's file cache, set by build()

    # ------------------------------------------------------------------ voices
    def voice_choices(self) -> list[tuple[str, str]]:
        return [(f"{v.name} (built-in)" if v.builtin else v.name, v.name) for v in self.service.store.list()]

    async def _voice(self, name: str | None, ref_audio: str | None, ref_text: str | None) -> tuple[Any, str]:
        """A reference given on the page wins over the chosen voice; returns (voice, its label)."""
        if ref_audio:
            text = ref_text or ""
            self.service.check_text(text, "ref_text")
            data = await self._read_reference(ref_audio)
            return await self.service.prepare(data, text), "your reference"
        if not name:
            name = self.service.default_voice_name()
            if name is None:
                raise UiError("choose a voice, or give a reference audio and its text")
        return await self.service.voice(name), name

    async def _read_reference(self, path: str) -> bytes:
        """The page's upload through the API's upload checks (size, format, duration)."""
        from starlette.datastructures import UploadFile

        try:
            size = os.path.getsize(path)
            f = open(path, "rb")  # noqa: SIM115 - closed below, after the async read
        except OSError as e:
            raise UiError(f"cannot read the reference audio: {e.strerror or e}") from None
        try:
            data, _fmt, _secs, _sr = await self.service.read_upload(
                UploadFile(f, size=size, filename=Path(path).name)
            )
        finally:
            f.close()
        return data

    async def save_voice(self, name: str, ref_audio: str | None, ref_text: str):
        import gradio as gr
        from starlette.datastructures import UploadFile

        try:
            self.service.require_ready()
            if not ref_audio:
                raise UiError("record or upload a reference audio first")
            name = (name or "").strip()
            with open(ref_audio, "rb") as f:
                upload = UploadFile(f, size=os.path.getsize(ref_audio), filename=Path(ref_audio).name)
                stored = await self.service.add_voice(name, upload, ref_text or "", False)
        except (ApiError, IndicF5Error, UiError, OSError) as e:
            raise gr.Error(message_of(e)) from None
        gr.Info(f"Saved voice '{stored.name}'")
        return gr.update(choices=self.voice_choices(), value=stored.name)

    def refresh(self):
        import gradio as gr

        choices = self.voice_choices()
        default = self.service.default_voice_name()
        return gr.update(choices=choices, value=default)

    # ------------------------------------------------------------------ defaults = the server's
    def _sampling(self) -> Any:
        return getattr(getattr(self.service.engine, "config", None), "sampling", None)

    def default_preset(self) -> str | None:
        """The preset the server's sampling options equal, if any (None sends no preset)."""
        s = self._sampling()
        for name, values in PRESETS.items():
            if s is not None and all(getattr(s, k, None) == v for k, v in values.items()):
                return name
        return None

    def default_speed(self) -> float:
        return float(getattr(self._sampling(), "speed", 1.0) or 1.0)

    # ------------------------------------------------------------------ synthesis
    def _request(self, text, voice, seed, preset, nfe_step, speed) -> Any:
        return self.service.make_request(
            text,
            voice,
            "text",
            seed=seed,
            preset=preset or None,
            nfe_step=int(nfe_step) if nfe_step else None,
            speed=float(speed) if speed else None,
        )

    def _save(self, data: bytes, name: str) -> str:
        """Write into Gradio's cache (served from there, deleted with it)."""
        from gradio.processing_utils import save_bytes_to_cache

        assert self.cache_dir is not None, "build() first"
        return save_bytes_to_cache(data, name, cache_dir=self.cache_dir)

    async def synthesize(
        self,
        text: str,
        voice: str | None = None,
        seed: float | None = None,
        nfe_step: float | None = None,
        preset: str | None = None,
        speed: float | None = 1.0,
    ) -> str:
        """The ``/synthesize`` API: the HTTP API's WAV bytes for the same request, as a file.
        ``seed`` None or negative = random; ``nfe_step`` None or 0 = the preset's."""
        import gradio as gr

        t0 = time.perf_counter()
        try:
            self.service.require_ready()
            prepared, _ = await self._voice(voice, None, None)
            fixed = None if seed is None or seed < 0 else int(seed)
            req = self._request(text or "", prepared, fixed, preset, nfe_step, speed)
            response = await self.service.respond(req, "wav", False, ROUTE, t0)
        except Exception as e:  # every failure is a message for the caller, never a traceback
            if not isinstance(e, (ApiError, IndicF5Error, UiError)):
                log.exception("ui synthesize failed")
            raise gr.Error(message_of(e)) from None
        return self._save(bytes(response.body), "speech.wav")

    async def generate(
        self,
        text: str,
        voice: str | None,
        ref_audio: str | None,
        ref_text: str | None,
        preset: str | None,
        nfe_step: float | None,
        speed: float | None,
        seed: float | None,
        random_seed: bool,
    ) -> AsyncIterator[tuple]:
        """The page's Generate: stream each chunk to the player as it is made, then the full
        result (WAV/FLAC downloads, spectrogram, RTF and time to first audio)."""
        import gradio as gr

        t0 = time.perf_counter()
        pieces: list[np.ndarray] = []
        ttfa = None
        try:
            self.service.require_ready()
            self.service.check_text(text or "", "text")  # before the (slower) voice preparation
            prepared, label = await self._voice(voice, ref_audio, ref_text)
            used_seed = secrets.randbelow(2**31) if random_seed or seed is None else int(seed)
            if used_seed < 0:
                raise UiError("seed must be a non-negative integer")
            req = self._request(text or "", prepared, used_seed, preset, nfe_step, speed)
            # the API's streaming path (raw s16le per chunk): same admission, worker and metrics
            response = await self.service.respond(req, "pcm", True, ROUTE, t0)
            body = response.body_iterator
            try:
                async for data in body:
                    pcm = np.frombuffer(data, dtype="<i2")
                    if not len(pcm):
                        continue
                    if ttfa is None:
                        ttfa = time.perf_counter() - t0
                    pieces.append(pcm)
                    status = f"Generating… first audio after **{ttfa:.2f} s** ({len(pieces)} chunk(s) so far)"
                    chunk = wav_bytes(pcm, self.sample_rate) if self.streaming else gr.skip()
                    yield chunk, status, gr.skip(), gr.skip()
            finally:
                await body.aclose()
        except Exception as e:
            if not isinstance(e, (ApiError, IndicF5Error, UiError)):
                log.exception("ui generate failed")
            raise gr.Error(message_of(e)) from None
        total = time.perf_counter() - t0
        pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        seconds = len(pcm) / self.sample_rate
        opts = getattr(req, "options", None)
        steps = f"NFE {opts.nfe_step} {opts.schedule}" if opts is not None else (preset or "")
        stats = (
            f"**RTF {total / max(seconds, 1e-9):.3f}** · time to first audio **{(ttfa or total):.2f} s** · "
            f"{seconds:.2f} s of audio in {total:.2f} s · voice {label} · {steps} · seed {used_seed}"
        )
        files, image = await asyncio.to_thread(self._result, pcm)  # encoding + STFT: off the loop
        yield (gr.skip() if self.streaming else files[0]), stats, image, files

    def _result(self, pcm: np.ndarray) -> tuple[list[str], np.ndarray | None]:
        """The full audio as WAV and FLAC files, and its spectrogram."""
        files = [
            self._save(wav_bytes(pcm, self.sample_rate), "speech.wav"),
            self._save(wav_bytes(pcm, self.sample_rate, "FLAC"), "speech.flac"),
        ]
        return files, (spectrogram_image(pcm, self.mel) if len(pcm) else None)

    # ------------------------------------------------------------------ the page
    def build(self) -> gr.Blocks:
        import gradio as gr

        max_chars = self.settings.max_input_chars
        with gr.Blocks(
            title="IndicF5 playground", analytics_enabled=False, delete_cache=(1800, 3600)
        ) as demo:
            gr.Markdown(
                "## IndicF5 playground\nChoose a voice (or give your own reference), type text in any "
                "of the 11 languages, Generate: audio plays as each chunk is ready."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    voice = gr.Dropdown(
                        choices=self.voice_choices(),
                        value=self.service.default_voice_name(),
                        label="Voice",
                        elem_id="indicf5-voice",
                    )
                    with gr.Accordion("Your own reference voice", open=False, elem_id="indicf5-reference"):
                        ref_audio = gr.Audio(
                            sources=["upload", "microphone"],
                            type="filepath",
                            label="Reference audio",
                            elem_id="indicf5-ref-audio",
                        )
                        ref_text = gr.Textbox(
                            label="Reference text (what the reference says)",
                            lines=2,
                            elem_id="indicf5-ref-text",
                        )
                        gr.Markdown(
                            "When a reference audio is given here it is used instead of the voice above."
                        )
                        with gr.Row():
                            voice_name = gr.Textbox(
                                label="Save as voice named", scale=3, elem_id="indicf5-voice-name"
                            )
                            save = gr.Button("Save voice", scale=1, elem_id="indicf5-save")
                    text = gr.Textbox(
                        label="Text",
                        lines=4,
                        max_length=max_chars,
                        elem_id="indicf5-text",
                        placeholder="Type, or pick an example below",
                    )
                    gr.Examples(
                        [[t] for _, t in EXAMPLES],
                        inputs=[text],
                        label="Examples (11 languages)",
                        example_labels=[f"{lang}: {t}" for lang, t in EXAMPLES],
                        examples_per_page=len(EXAMPLES),
                    )
                with gr.Column(scale=1):
                    with gr.Row():
                        preset = gr.Radio(
                            sorted(PRESETS),
                            value=self.default_preset(),
                            label="Preset",
                            info="quality: 32 steps (IndicF5's); fast: EPSS 7; none: the server's",
                            scale=2,
                        )
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", scale=1)
                        random_seed = gr.Checkbox(value=False, label="Random seed", scale=1)
                    with gr.Row():
                        nfe = gr.Slider(0, 64, value=0, step=1, label="NFE steps (0 = the preset's)")
                        speed = gr.Slider(0.25, 4.0, value=self.default_speed(), step=0.05, label="Speed")
                    generate = gr.Button("Generate", variant="primary", elem_id="indicf5-generate")
                    live = gr.Audio(
                        streaming=self.streaming,
                        autoplay=True,
                        interactive=False,
                        label="Speech (streamed as it is generated)" if self.streaming else "Speech",
                        elem_id="indicf5-audio",
                    )
                    stats = gr.Markdown(elem_id="indicf5-stats")
                    spectrogram = gr.Image(
                        label="Mel spectrogram",
                        format="png",
                        interactive=False,
                        height=180,
                        elem_id="indicf5-mel",
                    )
                    files = gr.File(
                        label="Download (WAV, FLAC)", file_count="multiple", elem_id="indicf5-files"
                    )

            generate.click(
                self.generate,
                [text, voice, ref_audio, ref_text, preset, nfe, speed, seed, random_seed],
                [live, stats, spectrogram, files],
                api_visibility="private",
            )
            save.click(self.save_voice, [voice_name, ref_audio, ref_text], [voice], api_visibility="private")
            demo.load(self.refresh, None, [voice], api_visibility="private")

            # the programmatic endpoint (gradio_client): plain inputs, not the page's widgets, so a
            # voice saved after the page loaded is accepted and every check is the service's
            with gr.Group(visible=False):
                a_text, a_voice, a_preset = gr.Textbox(), gr.Textbox(), gr.Textbox()
                a_seed, a_nfe, a_speed = gr.Number(precision=0), gr.Number(precision=0), gr.Number(value=1.0)
                a_out = gr.File()
                a_go = gr.Button()
            a_go.click(
                self.synthesize,
                [a_text, a_voice, a_seed, a_nfe, a_preset, a_speed],
                [a_out],
                api_name="synthesize",
            )
        self.cache_dir = demo.GRADIO_CACHE
        # the engine's batcher is the one admission limit; Gradio's own queue must not serialise
        demo.queue(default_concurrency_limit=None)
        return demo


def theme() -> Any:
    import gradio as gr

    return gr.themes.Default(font=list(FONTS), font_mono=list(MONO_FONTS))


def mount_ui(app: FastAPI, service: SpeechService, settings: ServerSettings, path: str = UI_PATH) -> None:
    """Mount the playground at ``path`` of ``app`` (the API's app: same engine, batcher, voices)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no phoning home
    try:
        import gradio as gr
    except ImportError as e:
        raise IndicF5Error(
            f"the web playground needs the ui extra: pip install 'indicf5-fast[ui]' ({e})"
        ) from None
    from fastapi.responses import RedirectResponse

    # Gradio encodes streamed audio with ffmpeg; without it the player gets the whole result
    streaming = shutil.which("ffmpeg") is not None
    if not streaming:
        log.warning("ffmpeg not found: the playground plays audio when it is complete, not streamed")
    demo = Playground(service, settings, streaming).build()
    key = settings.api_key

    def login(_user: str, password: str) -> bool:
        return key is not None and hmac.compare_digest(str(password).encode(), key.encode())

    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        auth=login if key else None,
        auth_message="Enter the server's API key as the password (any user name)." if key else None,
        max_file_size=settings.max_ref_bytes,
        footer_links=["api", "settings"],
        run_history=False,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        theme=theme(),
        css=CSS,
    )

    @app.get("/", include_in_schema=False)
    async def to_ui() -> RedirectResponse:
        return RedirectResponse(f"{path}/")
