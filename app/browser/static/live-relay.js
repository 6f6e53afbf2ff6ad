// live-relay client kit: talk to a Live model through live-relay from a web page.
// One dependency-free ES module; served by the relay at /client/live-relay.js.
//
//   import { LiveRelay } from "https://relay.example.com/client/live-relay.js";
//   const live = new LiveRelay({ url: "wss://relay.example.com/v1/live", token,
//     setup: { model: "gemini-live-2.5-flash", inputAudioTranscription: {}, outputAudioTranscription: {} } });
//   live.addEventListener("output-transcript", (e) => show(e.detail.text));
//   live.addEventListener("close", (e) => show(`${e.detail.code} ${e.detail.reason}`));
//   await live.connect();          // rejects with the relay's reason when refused
//   await live.startMicrophone();  // mic -> 16 kHz PCM -> relay; answers play at 24 kHz
//
// `Microphone` and `AudioPlayer` also work on their own, e.g. with the official @google/genai
// SDK's session (see docs/browsers.md).

export const INPUT_MIME_TYPE = "audio/pcm;rate=16000";
export const OUTPUT_RATE = 24000;
const SUBPROTOCOL = "live-relay";
const VOICE_RMS = 500; // 16-bit RMS that counts as the user speaking (about -36 dBFS)
const WORKLET_URL = new URL("./live-relay-capture.js", import.meta.url);

// --- base64 both ways -------------------------------------------------------------------------

/** Standard base64 of bytes (the Live API accepts it; the relay forwards it untouched). */
export function encodeBase64(bytes) {
  const view = ArrayBuffer.isView(bytes)
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : new Uint8Array(bytes);
  let binary = "";
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, view.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes of standard or URL-safe base64 (some SDKs send `-` and `_`). */
export function decodeBase64(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(standard + "===".slice((standard.length + 3) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function loadWorklets(context) {
  if (!context.__liveRelayWorklets) {
    context.__liveRelayWorklets = context.audioWorklet.addModule(WORKLET_URL);
  }
  await context.__liveRelayWorklets;
}

// --- microphone -------------------------------------------------------------------------------

/** The microphone as 20 ms chunks of 16 kHz 16-bit PCM, whatever rate the device runs at. */
export class Microphone extends EventTarget {
  constructor(context) {
    super();
    this.context = context;
    this.stream = null;
    this.node = null;
    this.lastVoiceAt = null; // performance.now() of the last chunk loud enough to be speech
  }

  /** Ask for the microphone; each chunk fires a "chunk" event ({pcm: ArrayBuffer, rms}). */
  async start(constraints = {}) {
    await loadWorklets(this.context);
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, ...constraints },
    });
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "live-relay-capture");
    this.node.port.onmessage = ({ data }) => {
      if (data.rms >= VOICE_RMS) this.lastVoiceAt = performance.now();
      this.dispatchEvent(new CustomEvent("chunk", { detail: data }));
    };
    source.connect(this.node);
    // Worklets only run when connected to the graph's output; this branch stays silent.
    const mute = this.context.createGain();
    mute.gain.value = 0;
    this.node.connect(mute).connect(this.context.destination);
  }

  stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.node?.disconnect();
    this.stream = null;
    this.node = null;
  }
}

// --- playback ---------------------------------------------------------------------------------

/** A gapless queue of 24 kHz 16-bit PCM chunks; `flush()` silences it at once (barge-in). */
export class AudioPlayer extends EventTarget {
  constructor(context) {
    super();
    this.context = context;
    this.sources = new Set();
    this.playAt = 0;
    this.playedSeconds = 0; // sound that reached the output, measured after the queue
    this.sounding = false;
    this.output = null;
  }

  async start() {
    await loadWorklets(this.context);
    this.output = new AudioWorkletNode(this.context, "live-relay-meter");
    this.output.port.onmessage = ({ data }) => {
      this.playedSeconds = data.soundSeconds;
      if (data.sounding !== this.sounding) {
        this.sounding = data.sounding;
        const lag = (this.context.currentTime - data.time) * 1000;
        const at = performance.now() - Math.max(lag, 0);
        this.dispatchEvent(new CustomEvent(data.sounding ? "sound" : "silence", { detail: { at } }));
      }
    };
    this.output.connect(this.context.destination);
  }

  /** Seconds of audio scheduled but not yet played. */
  get queuedSeconds() {
    return Math.max(0, this.playAt - this.context.currentTime);
  }

  /** Queue base64 PCM as the Live API sends it (`inlineData.data`). */
  enqueueBase64(data, rate = OUTPUT_RATE) {
    this.enqueue(decodeBase64(data), rate);
  }

  /** Queue little-endian 16-bit PCM bytes. */
  enqueue(bytes, rate = OUTPUT_RATE) {
    // Int16Array needs an even offset; copy the rare view that does not start on one.
    const aligned = bytes.byteOffset % 2 ? bytes.slice() : bytes;
    const samples = new Int16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 1);
    if (samples.length === 0) return;
    const buffer = this.context.createBuffer(1, samples.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 0x8000;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output ?? this.context.destination);
    // A little headroom on the first chunk absorbs network jitter without audible gaps.
    const now = this.context.currentTime;
    this.playAt = Math.max(this.playAt, now + 0.02);
    source.start(this.playAt);
    this.playAt += buffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
  }

  /** Stop everything queued: the user spoke over the answer. */
  flush() {
    for (const source of this.sources) {
      source.onended = null;
      source.stop();
      source.disconnect();
    }
    this.sources.clear();
    this.playAt = this.context.currentTime;
  }
}

// --- avatar video -----------------------------------------------------------------------------

// Used when a chunk names no H.264 configuration the player can read.
export const AVATAR_CODECS = 'video/mp4; codecs="avc1.42C00A"';

/** The codecs string of a fragmented MP4 init segment: `avc1.PPCCLL` from its avcC box. */
export function mp4Codecs(bytes) {
  for (let i = 4; i + 7 < bytes.length; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
      const hex = (byte) => byte.toString(16).padStart(2, "0").toUpperCase();
      return `video/mp4; codecs="avc1.${hex(bytes[i + 5])}${hex(bytes[i + 6])}${hex(bytes[i + 7])}"`;
    }
  }
  return AVATAR_CODECS;
}

/**
 * A Live Avatar (`responseModalities: ["VIDEO"]`): fragmented MP4 chunks (`video/mp4`, each
 * with its init segment) appended in order to a <video> through Media Source Extensions.
 * `flush()` drops what is buffered ahead of the picture (barge-in). Events: chunk {frames}.
 */
export class VideoPlayer extends EventTarget {
  constructor(video) {
    super();
    this.video = video;
    this.queue = [];
    this.source = null;
    this.buffer = null;
    this.chunks = 0; // chunks appended
    this.resumeAt = null; // after a flush: where the next chunk goes on the timeline
  }

  enqueueBase64(data) {
    this.enqueue(decodeBase64(data));
  }

  enqueue(bytes) {
    this.queue.push(bytes);
    if (this.source === null) this.#open(bytes);
    else this.#pump();
  }

  /** Seconds of video buffered ahead of the picture. */
  get queuedSeconds() {
    const ranges = this.buffer?.buffered;
    if (!ranges || ranges.length === 0) return 0;
    return Math.max(0, ranges.end(ranges.length - 1) - this.video.currentTime);
  }

  flush() {
    this.queue.length = 0;
    const ranges = this.buffer?.buffered;
    if (!ranges || ranges.length === 0 || this.buffer.updating) return;
    const from = this.video.currentTime;
    const end = ranges.end(ranges.length - 1);
    if (end <= from) return;
    this.resumeAt = from;
    this.buffer.remove(from, end);
  }

  #open(first) {
    this.source = new MediaSource();
    this.video.src = URL.createObjectURL(this.source);
    this.source.addEventListener("sourceopen", () => {
      this.buffer = this.source.addSourceBuffer(mp4Codecs(first));
      this.buffer.mode = "sequence"; // chunks follow each other, whatever their timestamps say
      this.buffer.addEventListener("updateend", () => {
        if (this.resumeAt !== null) {
          this.buffer.timestampOffset = this.resumeAt; // no gap where the flush cut
          this.resumeAt = null;
        }
        this.#pump();
      });
      this.#pump();
    }, { once: true });
  }

  #pump() {
    if (this.buffer === null || this.buffer.updating || this.queue.length === 0) return;
    this.buffer.appendBuffer(this.queue.shift());
    this.chunks += 1;
    this.video.play().catch(() => {}); // muted avatars may autoplay; the voice plays as audio
    this.dispatchEvent(new CustomEvent("chunk", { detail: { chunks: this.chunks } }));
  }
}

// --- a session over the relay's plain protocol ------------------------------------------------

/**
 * A Live session through the relay. Events (CustomEvent, data in `detail`):
 *   setupcomplete, message (every server message), text {text}, input-transcript {text},
 *   output-transcript {text}, playing {latencyMs}, interrupted {flushedSeconds}, turn-complete, tool-call
 *   {functionCalls}, usage {usageMetadata}, goaway {timeLeft}, close {code, reason}.
 * Given `video` (a <video> element), a VIDEO answer's avatar plays there (`videoPlayer`).
 */
export class LiveRelay extends EventTarget {
  constructor({ url, token, setup, audioContext, sampleRate, video } = {}) {
    super();
    this.url = url;
    this.token = token;
    this.setup = setup;
    this.context = audioContext ?? new AudioContext(sampleRate ? { sampleRate } : {});
    this.microphone = new Microphone(this.context);
    this.player = new AudioPlayer(this.context);
    // With a <video> element: the avatar of a VIDEO answer plays there (muted: its voice
    // comes as audio).
    this.videoPlayer = video ? new VideoPlayer(video) : null;
    this.socket = null;
    this.closed = null; // {code, reason} once the session has ended
    this.latencies = []; // per answer: last speech from the mic -> first sound played, in ms
    this.awaitingAnswer = true;
    this.microphone.addEventListener("chunk", (event) => this.sendAudio(event.detail.pcm));
    this.player.addEventListener("sound", (event) => this.#onSound(event.detail.at));
  }

  /** Open the session; resolves on setupComplete, rejects with the relay's close reason. */
  async connect() {
    await this.context.resume();
    await this.player.start();
    const protocols = this.token ? [SUBPROTOCOL, this.token] : [];
    const socket = new WebSocket(this.url, protocols);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.onopen = () => socket.send(JSON.stringify({ setup: this.setup }));
      socket.onmessage = (event) => {
        const text = typeof event.data === "string" ? event.data : new TextDecoder().decode(event.data);
        const message = JSON.parse(text);
        if (message.setupComplete) resolve(this);
        this.#dispatch(message);
      };
      socket.onclose = (event) => {
        this.closed = { code: event.code, reason: event.reason };
        this.microphone.stop();
        this.dispatchEvent(new CustomEvent("close", { detail: this.closed }));
        reject(new Error(`closed ${event.code}: ${event.reason || "no reason given"}`));
      };
    });
  }

  startMicrophone(constraints) {
    return this.microphone.start(constraints);
  }

  stopMicrophone() {
    this.microphone.stop();
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  sendAudio(pcm) {
    this.send({ realtimeInput: { audio: { mimeType: INPUT_MIME_TYPE, data: encodeBase64(new Uint8Array(pcm)) } } });
  }

  sendText(text) {
    this.awaitingAnswer = true;
    this.send({ clientContent: { turns: [{ role: "user", parts: [{ text }] }], turnComplete: true } });
  }

  sendToolResponse(functionResponses) {
    this.send({ toolResponse: { functionResponses } });
  }

  close(code = 1000, reason = "") {
    this.microphone.stop();
    this.player.flush();
    this.socket?.close(code, reason);
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  #onSound(at) {
    if (!this.awaitingAnswer) return;
    this.awaitingAnswer = false;
    const spoke = this.microphone.lastVoiceAt;
    const latencyMs = spoke === null ? null : at - spoke;
    if (latencyMs !== null) this.latencies.push(latencyMs);
    this.#emit("playing", { latencyMs });
  }

  #dispatch(message) {
    this.#emit("message", message);
    if (message.setupComplete) this.#emit("setupcomplete", {});
    const content = message.serverContent;
    if (content) {
      for (const part of content.modelTurn?.parts ?? []) {
        if (part.text) this.#emit("text", { text: part.text });
        const data = part.inlineData;
        if (data?.data && data.mimeType?.startsWith("audio/pcm")) {
          const rate = Number(/rate=(\d+)/.exec(data.mimeType)?.[1] ?? OUTPUT_RATE);
          this.player.enqueueBase64(data.data, rate);
        } else if (data?.data && data.mimeType?.startsWith("video/mp4")) {
          this.videoPlayer?.enqueueBase64(data.data);
        }
      }
      if (content.inputTranscription?.text) this.#emit("input-transcript", { text: content.inputTranscription.text });
      if (content.outputTranscription?.text) this.#emit("output-transcript", { text: content.outputTranscription.text });
      if (content.interrupted) {
        const flushedSeconds = this.player.queuedSeconds;
        this.player.flush();
        this.videoPlayer?.flush();
        this.#emit("interrupted", { flushedSeconds });
      }
      if (content.turnComplete) {
        this.awaitingAnswer = true;
        this.#emit("turn-complete", {});
      }
    }
    if (message.toolCall) this.#emit("tool-call", message.toolCall);
    if (message.usageMetadata) this.#emit("usage", message.usageMetadata);
    if (message.goAway) this.#emit("goaway", message.goAway);
  }
}
