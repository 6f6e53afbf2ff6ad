// AudioWorklet processors of the live-relay client kit (loaded by live-relay.js).
//
// "live-relay-capture": microphone samples at the context's rate (44.1 kHz, 48 kHz, whatever
// the device runs at) -> 16 kHz 16-bit PCM in 20 ms chunks, posted to the page with their RMS.
// A one-pole low-pass at 7 kHz keeps what lies above 8 kHz from folding back into speech, then
// linear interpolation picks the 16 kHz samples; the fractional position carries across
// render quanta, so no sample is dropped or repeated at block edges.
//
// "live-relay-meter": sits between the playback queue and the speakers, passes audio through
// unchanged, and reports when sound actually reaches the output and how much of it did.

const TARGET_RATE = 16000;
const CHUNK_SAMPLES = 320; // 20 ms at 16 kHz
const CUTOFF_HZ = 7000;
const SOUND_LEVEL = 1e-3; // |sample| above this (-60 dBFS) counts as sound

class LiveRelayCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.position = 0; // next output sample, in input samples from the block start
    this.previous = 0; // the last filtered sample of the previous block
    this.filtered = 0;
    this.alpha = this.step > 1 ? 1 - Math.exp((-2 * Math.PI * CUTOFF_HZ) / sampleRate) : 1;
    this.chunk = new Int16Array(CHUNK_SAMPLES);
    this.filled = 0;
    this.energy = 0;
    this.block = new Float32Array(128);
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.block.length < channel.length) this.block = new Float32Array(channel.length);
    const block = this.block;
    let y = this.filtered;
    for (let i = 0; i < channel.length; i++) {
      y += this.alpha * (channel[i] - y);
      block[i] = y;
    }
    this.filtered = y;
    const last = channel.length - 1;
    let p = this.position;
    while (p < last) {
      const i = Math.floor(p);
      const a = i < 0 ? this.previous : block[i];
      const value = a + (block[i + 1] - a) * (p - i);
      this.push(value);
      p += this.step;
    }
    this.position = p - channel.length;
    this.previous = block[last];
    return true;
  }

  push(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    const sample = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.chunk[this.filled++] = sample;
    this.energy += sample * sample;
    if (this.filled === CHUNK_SAMPLES) {
      const rms = Math.sqrt(this.energy / CHUNK_SAMPLES);
      this.port.postMessage({ pcm: this.chunk.buffer, rms }, [this.chunk.buffer]);
      this.chunk = new Int16Array(CHUNK_SAMPLES);
      this.filled = 0;
      this.energy = 0;
    }
  }
}

class LiveRelayMeter extends AudioWorkletProcessor {
  constructor() {
    super();
    this.sounding = false;
    this.soundFrames = 0;
    this.reported = 0;
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    const output = outputs[0] && outputs[0][0];
    let loud = false;
    if (input) {
      for (let i = 0; i < input.length; i++) {
        if (output) output[i] = input[i];
        if (!loud && Math.abs(input[i]) > SOUND_LEVEL) loud = true;
      }
    }
    if (loud) this.soundFrames += input.length;
    if (loud !== this.sounding) {
      this.sounding = loud;
      this.port.postMessage({ sounding: loud, time: currentTime, soundSeconds: this.soundFrames / sampleRate });
    } else if (this.soundFrames - this.reported >= sampleRate / 4) {
      this.reported = this.soundFrames;
      this.port.postMessage({ sounding: loud, time: currentTime, soundSeconds: this.soundFrames / sampleRate });
    }
    return true;
  }
}

registerProcessor("live-relay-capture", LiveRelayCapture);
registerProcessor("live-relay-meter", LiveRelayMeter);
