// One call from the page: microphone -> /v1.0/browser -> agent -> speaker.
//
// The browser leg speaks Asterisk chan_websocket's protocol with JSON control: MEDIA_START
// first (format slin16, 640-byte frames), then binary 20 ms frames of 16 kHz PCM16 both ways;
// the server sends MARK_MEDIA / FLUSH_MEDIA / HANGUP commands and we answer
// MEDIA_MARK_PROCESSED once the audio before a mark has played.

const FRAME_BYTES = 640;

function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
}

async function openAudio(stream) {
  // 16 kHz where the browser allows it: no resampling in the page at all.
  for (const options of [{ sampleRate: 16000 }, {}]) {
    const ctx = new AudioContext(options);
    try {
      await ctx.audioWorklet.addModule("/page/worklet.js");
      const source = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, "callbridge-audio", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      });
      source.connect(node);
      node.connect(ctx.destination);
      await ctx.resume();
      return { ctx, node };
    } catch (err) {
      await ctx.close();
      if (!options.sampleRate) throw err;
    }
  }
  throw new Error("no usable AudioContext");
}

export class Talk {
  constructor(handlers) {
    this.on = handlers; // {state(name, detail), levels(mic, agent, playedMs)}
    this.channelId = newId();
    this.ws = null;
    this.audio = null;
    this.stream = null;
    this.ended = false;
  }

  async start(mediaToken, agentId) {
    this.on.state("connecting", "Asking for your microphone…");
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.audio = await openAudio(this.stream);
    this.audio.node.port.onmessage = (e) => this.fromAudio(e.data);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token: mediaToken });
    if (agentId) query.set("agent_id", agentId);
    this.on.state("connecting", "Connecting to the agent…");
    const ws = new WebSocket(`${scheme}//${location.host}/v1.0/browser?${query}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        event: "MEDIA_START",
        connection_id: `page-${this.channelId.slice(0, 8)}`,
        channel: `Browser/${this.channelId.slice(0, 8)}`,
        channel_id: this.channelId,
        format: "slin16",
        optimal_frame_size: FRAME_BYTES,
        ptime: 20,
        channel_variables: { CALLER: "browser", CALLEE: "agent" },
      }));
      this.on.state("live", "Connected: speak now.");
    };
    ws.onmessage = (e) => this.fromServer(e.data);
    ws.onclose = (e) => this.finish(e.code, e.reason);
    ws.onerror = () => this.on.state("error", "The connection to callbridge failed.");
  }

  fromAudio(msg) {
    if (msg.type === "frame") {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(msg.pcm);
    } else if (msg.type === "marked") {
      this.sendJson({ event: "MEDIA_MARK_PROCESSED", correlation_id: msg.name });
    } else if (msg.type === "levels") {
      this.on.levels(msg.mic, msg.agent, msg.playedMs);
    }
  }

  fromServer(data) {
    const port = this.audio && this.audio.node.port;
    if (!port) return;
    if (data instanceof ArrayBuffer) {
      port.postMessage({ type: "play", pcm: data }, [data]);
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.command === "MARK_MEDIA") port.postMessage({ type: "mark", name: msg.correlation_id });
    else if (msg.command === "FLUSH_MEDIA") port.postMessage({ type: "flush" });
    else if (msg.command === "HANGUP") this.on.state("ending", "The agent ended the call.");
  }

  pressKey(digit) {
    this.sendJson({ event: "DTMF_END", digit }); // as Asterisk reports a key press
  }

  sendJson(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  stop() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "caller hung up");
    else this.finish(1000, "");
  }

  finish(code, reason) {
    if (this.ended) return;
    this.ended = true;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.audio) this.audio.ctx.close();
    const why = code === 1000 || code === 1005 ? "Call ended." : `Call ended (${code}${reason ? ": " + reason : ""}).`;
    this.on.state("ended", why);
  }
}
