"""run_call end to end over an in-memory link, with the offline engines and real audio.

The caller audio is rtp_fixtures/speech/ (piper-made utterances, see its README). Audio is fed
twice as fast as real time to keep the suite quick; VAD counts audio, not wall time.
"""

from __future__ import annotations

import asyncio

from ai_pipeline.engines.intent_router import TOOL_ERROR_REPLY
from ai_pipeline.engines.models import ModelStore
from ai_pipeline.pipeline import make_call_handler
from proto.messages import (
    Audio,
    CallStart,
    Dtmf,
    Error,
    FunctionCall,
    Hangup,
    Interruption,
    Text,
    Transcript,
)
from tests.ai_pipeline.call_harness import Call, agent_text, answer_transferred, run_scenario
from tests.ai_pipeline.memory_link import MemoryLink, play, silence_ms


def test_transfer_to_sales_end_to_end(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": "Hello, how can I help?"}, answer_transferred)
        _, greeting = await call.wait_for(Transcript, agent_text)
        assert greeting.text == "Hello, how can I help?"
        await call.wait_for(Audio)
        await call.say("transfer_sales.wav")
        i_caller, caller = await call.wait_for(Transcript, lambda f: f.role == "caller")
        assert "sales" in caller.text.lower()
        i_call, fc = await call.wait_for(FunctionCall)
        assert (fc.name, fc.arguments) == ("transfer_call", {"department": "sales"})
        assert i_call > i_caller
        _i_reply, reply = await call.wait_for(Transcript, agent_text, after=i_call)
        assert "sales" in reply.text.lower()
        audio_after = [f for f in call.frames[i_call:] if isinstance(f, Audio)]
        assert audio_after, "the reply was spoken"
        assert all(a.sample_rate_hz == 16000 for a in audio_after)
        spoken_ms = sum(len(a.pcm16) for a in audio_after) / 32
        assert spoken_ms > 800  # "Okay, I'm connecting you to sales now." is well over a second
        await call.finish()

    run_scenario(main)


def test_barge_in_sends_interruption_while_agent_talks(models: ModelStore) -> None:
    greeting = (
        "Welcome to the callbridge demo line. This greeting is deliberately long, so "
        "that the caller has plenty of time to interrupt it before it ends. "
        "Please listen carefully, as our menu options have changed recently."
    )

    async def main() -> None:
        call = Call(models, {"greeting": greeting}, answer_transferred)
        i_audio, _ = await call.wait_for(Audio)
        await call.say("transfer_sales.wav", lead_ms=100)
        i_int, _ = await call.wait_for(Interruption, after=i_audio)
        # The greeting was never reported as said: at most the part the caller heard before
        # the barge-in (by the time its audio takes to play), as cut short...
        i_call, fc = await call.wait_for(FunctionCall, after=i_int)
        said = [f for f in call.frames[:i_call] if isinstance(f, Transcript) and agent_text(f)]
        assert all(not f.final and greeting.startswith(f.text) for f in said), said
        assert sum(len(f.text) for f in said) < len(greeting) / 2
        # ...TTS stopped: the last sentence of the greeting was never sent...
        assert fc.arguments == {"department": "sales"}
        assert not any(isinstance(f, Audio) for f in call.frames[i_int:i_call])
        assert not any(
            isinstance(f, Transcript) and f.final and "menu options" in f.text for f in call.frames
        )
        # ...and the agent answers the caller's new request.
        _, reply = await call.wait_for(Transcript, agent_text, after=i_call)
        assert "sales" in reply.text
        await call.finish()

    run_scenario(main)


def test_bad_config_ends_only_that_call_with_fatal_error(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"engines": {"llm": "sentient-toaster"}})
        await asyncio.wait_for(call.agent, 10)  # returns by itself
        _, err = await call.wait_for(Error)
        assert err.fatal and err.code == "bad_agent_config"
        assert "sentient-toaster" in err.message
        # The next call in the same process is fine.
        ok = Call(models, {"greeting": "Hi."})
        await ok.wait_for(Transcript, agent_text)
        await ok.finish()
        await call.finish()

    run_scenario(main)


def test_wrong_link_format_is_a_fatal_error(models: ModelStore) -> None:
    async def main() -> None:
        link = MemoryLink()
        start = CallStart("c-8k", sample_rate_hz=8000)
        await asyncio.wait_for(make_call_handler(models, env={})(start, link), 10)
        frame = link.from_agent.get_nowait()
        assert isinstance(frame, Error) and frame.fatal and frame.code == "unsupported_format"
        assert "8000 Hz" in frame.message

    run_scenario(main)


def test_missing_engine_key_is_a_fatal_error(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"engines": {"llm": {"name": "openai", "model": "gpt-4.1-mini"}}})
        await asyncio.wait_for(call.agent, 10)
        _, err = await call.wait_for(Error)
        assert err.fatal and err.code == "engine_unavailable"
        assert "OPENAI_API_KEY" in err.message
        await call.finish()

    run_scenario(main)


def test_dtmf_reaches_the_llm(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": ""}, answer_transferred)
        await call.link.to_agent.put(Dtmf("2"))
        await call.link.to_agent.put(Dtmf("#"))
        _, fc = await call.wait_for(FunctionCall)
        assert (fc.name, fc.arguments) == ("transfer_call", {"department": "billing"})
        await call.finish()

    run_scenario(main)


def test_tool_timeout_gives_the_llm_an_error(models: ModelStore) -> None:
    async def never(_: FunctionCall) -> None:
        return None

    async def main() -> None:
        # (transfer_call waits for the transfer's answer, however long the tool timeout.)
        config = {"greeting": "", "tools": ["send_sms"], "tool_timeout_secs": 0.5}
        call = Call(models, config, never)
        await call.say("text_me.wav")
        i_call, fc = await call.wait_for(FunctionCall)
        assert fc.name == "send_sms"
        _, reply = await call.wait_for(Transcript, agent_text, after=i_call)
        assert reply.text == TOOL_ERROR_REPLY
        await call.finish()

    run_scenario(main)


def test_end_call_says_goodbye_then_hangs_up(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": "", "goodbye": "Bye now."})
        await call.say("goodbye.wav")
        i_hangup, hangup = await call.wait_for(Hangup)
        assert hangup.reason == "agent_end_call"
        before = call.frames[:i_hangup]
        assert any(isinstance(f, Transcript) and f.text == "Bye now." for f in before)
        assert any(isinstance(f, Audio) for f in before)
        # The core is asked to run end_call too, after the goodbye, so it is recorded as every
        # tool is (tool_called); its hang-up waits for the goodbye's audio as Hangup's does.
        tool = call.frames[i_hangup - 1]
        assert isinstance(tool, FunctionCall) and tool.name == "end_call", call.frames[-3:]
        assert tool.arguments == {"reason": "agent_end_call"}
        assert [f for f in call.frames if isinstance(f, FunctionCall)] == [tool]
        await call.finish()

    run_scenario(main)


def test_core_hangup_ends_the_call(models: ModelStore) -> None:
    async def main() -> None:
        call = Call(models, {"greeting": ""})
        await play(call.link, silence_ms(200))
        await call.link.to_agent.put(Hangup("caller"))
        await asyncio.wait_for(call.agent, 10)
        call._core.cancel()

    run_scenario(main)


def test_say_is_spoken_after_the_agent_or_at_once_cutting_it_off(models: ModelStore) -> None:
    """The control plane's say (a Text frame) in the agent's voice: queued after what the agent
    is saying, or, after an Interruption from the core, at once, the agent cut off."""
    long_greeting = (
        "Welcome to the callbridge demo line. This greeting is deliberately long, so that "
        "there is plenty of time to cut it off. Please listen carefully to every option."
    )

    async def main() -> None:
        queued = Call(models, {"greeting": "Hello, how can I help?"})
        await queued.wait_for(Audio)
        await queued.link.to_agent.put(Text("Your order has shipped."))
        i_greeting, _ = await queued.wait_for(
            Transcript, lambda f: agent_text(f) and f.final and f.text.startswith("Hello")
        )
        i_said, said = await queued.wait_for(Transcript, lambda f: "shipped" in f.text)
        assert (said.text, said.final) == ("Your order has shipped.", True)
        assert i_said > i_greeting  # after the greeting, whole: nothing was cut off
        assert not any(isinstance(f, Interruption) for f in queued.frames)
        # Spoken, not only reported: the greeting alone is ~1.4 s of audio, with the text ~2.8 s.
        spoken_ms = sum(len(f.pcm16) for f in queued.frames[:i_said] if isinstance(f, Audio)) / 32
        assert spoken_ms > 2400, spoken_ms
        await queued.finish()

        cut = Call(models, {"greeting": long_greeting})
        i_audio, _ = await cut.wait_for(Audio)
        await asyncio.sleep(1.0)  # the caller hears a second of the greeting
        await cut.link.to_agent.put(Interruption())
        await cut.link.to_agent.put(Text("We are closing in five minutes."))
        i_flush, _ = await cut.wait_for(Interruption, after=i_audio)  # the core must flush
        i_said, said = await cut.wait_for(Transcript, lambda f: "closing" in f.text, within_s=30)
        assert (said.text, said.final) == ("We are closing in five minutes.", True)
        greeting = [f for f in cut.frames if isinstance(f, Transcript) and "Welcome" in f.text]
        assert greeting and all(not f.final for f in greeting)  # cut short
        said_pcm16 = [f.pcm16 for f in cut.frames[i_flush:i_said] if isinstance(f, Audio)]
        assert sum(map(len, said_pcm16)) / 32 > 1200  # "We are closing..." itself, spoken
        await cut.finish()

    run_scenario(main)
