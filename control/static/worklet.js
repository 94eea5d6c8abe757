// The page's audio thread: microphone -> 20 ms frames of 16 kHz PCM16, and agent PCM16 -> speaker.
//
// Runs in an AudioContext at 16 kHz where the browser allows it (Chrome, Safari), so no
// resampling happens here at all; elsewhere the context runs at the device rate and this
// processor converts with a simple box filter (down) and linear interpolation (up): fine for
// speech in a demo page, not for the media core (which uses soxr).
//
// Playback is a queue of audio chunks and marks. A mark is reported back ("marked") when every
// sample queued before it has been played: that is how the server learns, as with Asterisk's
// MEDIA_MARK_PROCESSED, that the agent's words were heard. "flush" drops the queue (barge-in).

const LINK_RATE_HZ = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz
const MAX_QUEUED_S = 60; // bound the playout queue; the server paces no faster than real time x bursts

class CallbridgeAudio extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / LINK_RATE_HZ; // device samples per link sample
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.acc = 0; // box filter state (down)
    this.accCount = 0;
    this.queue = []; // {pcm: Float32Array, pos} | {mark: string}
    this.queuedSamples = 0; // at link rate
    this.upPos = 0; // fractional read position for linear up-sampling
    this.micPeak = 0;
    this.outPeak = 0;
    this.playedSamples = 0; // agent samples (link rate) played that were not silence
    this.ticks = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "play") {
      const pcm = new Int16Array(msg.pcm);
      if (this.queuedSamples + pcm.length > MAX_QUEUED_S * LINK_RATE_HZ) return; // bounded: drop
      const f = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
      this.queue.push({ pcm: f, pos: 0 });
      this.queuedSamples += pcm.length;
    } else if (msg.type === "mark") {
      this.queue.push({ mark: msg.name });
    } else if (msg.type === "flush") {
      this.queue = [];
      this.queuedSamples = 0;
    }
  }

  // One link-rate sample of agent audio, or 0 when the queue is empty; reports marks reached.
  nextAgentSample() {
    while (this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.queue.shift();
        this.port.postMessage({ type: "marked", name: head.mark });
        continue;
      }
      if (head.pos < head.pcm.length) {
        const s = head.pcm[head.pos++];
        this.queuedSamples--;
        if (s !== 0) this.playedSamples++;
        return s;
      }
      this.queue.shift();
    }
    return 0;
  }

  capture(input) {
    for (let i = 0; i < input.length; i++) {
      const s = input[i];
      this.micPeak = Math.max(this.micPeak, Math.abs(s));
      this.acc += s;
      this.accCount++;
      if (this.accCount < this.ratio) continue;
      const v = Math.max(-1, Math.min(1, this.acc / this.accCount));
      this.acc = 0;
      this.accCount = 0;
      this.frame[this.filled++] = v < 0 ? v * 32768 : v * 32767;
      if (this.filled === FRAME_SAMPLES) {
        const out = this.frame.slice().buffer;
        this.port.postMessage({ type: "frame", pcm: out }, [out]);
        this.filled = 0;
      }
    }
  }

  render(output) {
    if (this.ratio === 1) {
      for (let i = 0; i < output.length; i++) output[i] = this.nextAgentSample();
    } else {
      for (let i = 0; i < output.length; i++) {
        this.upPos += 1 / this.ratio;
        if (this.upPos >= 1) {
          this.upPos -= 1;
          this.prev = this.cur || 0;
          this.cur = this.nextAgentSample();
        }
        output[i] = (this.prev || 0) + ((this.cur || 0) - (this.prev || 0)) * this.upPos;
      }
    }
    for (let i = 0; i < output.length; i++) this.outPeak = Math.max(this.outPeak, Math.abs(output[i]));
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) this.capture(input);
    const out = outputs[0];
    if (out && out[0]) {
      this.render(out[0]);
      for (let c = 1; c < out.length; c++) out[c].set(out[0]);
    }
    if (++this.ticks % 8 === 0) { // ~every 64 ms at 16 kHz: levels for the meters
      this.port.postMessage({
        type: "levels",
        mic: this.micPeak,
        agent: this.outPeak,
        playedMs: (this.playedSamples * 1000) / LINK_RATE_HZ,
      });
      this.micPeak = 0;
      this.outPeak = 0;
    }
    return true;
  }
}

registerProcessor("callbridge-audio", CallbridgeAudio);
