// Scenarios run in Chromium with the official @google/genai web build, unchanged.
// Each returns plain JSON of what the SDK's typed messages said.
import { GoogleGenAI, Modality } from "@google/genai";

const MODEL = "gemini-live-2.5-flash";
const WEATHER_TOOL = {
  functionDeclarations: [{
    name: "get_weather",
    parameters: { type: "OBJECT", properties: { city: { type: "STRING" } }, required: ["city"] },
  }],
};

/** A client for `mode`: "vertex", "gemini" or "ephemeral" (an auth_tokens/ key).
 * docs/browsers.md shows these lines: tests/docs/test_browsers_doc.py keeps them the same. */
export function client(mode, { relayOrigin, credential }) {
  if (mode === "vertex") {
    // apiKey "" (the browser build refuses a missing one; a non-empty one would go into a
    // header a browser WebSocket cannot send) and the token in baseUrl's query string.
    const ai = new GoogleGenAI({
      vertexai: true,
      apiKey: "",
      httpOptions: { baseUrl: `${relayOrigin}/v1/live?access_token=${credential}` },
    });
    return ai;
  }
  if (mode === "ephemeral") {
    const ai = new GoogleGenAI({
      apiKey: `auth_tokens/${credential}`,
      httpOptions: { baseUrl: relayOrigin, apiVersion: "v1alpha" },
    });
    return ai;
  }
  const ai = new GoogleGenAI({ apiKey: credential, httpOptions: { baseUrl: relayOrigin } });
  return ai;
}

/** Connect; messages go into a queue that `next(predicate)` waits on. */
async function open(ai, config) {
  const queue = [];
  let wake = () => {};
  let closed = null;
  const session = await Promise.race([
    ai.live.connect({
      model: MODEL,
      config,
      callbacks: {
        onmessage: (message) => { queue.push(message); wake(); },
        onclose: (event) => { closed = `${event.code} ${event.reason}`; wake(); },
      },
    }),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no setupComplete: ${closed}`)), 15000)),
  ]);
  const seen = [];
  async function next(predicate) {
    const deadline = Date.now() + 15000;
    for (;;) {
      while (queue.length) {
        const message = queue.shift();
        seen.push(message);
        if (predicate(message)) return message;
      }
      if (closed) throw new Error(`closed ${closed}`);
      if (Date.now() > deadline) throw new Error("timed out waiting for a message");
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 200); });
    }
  }
  return { session, next, seen };
}

const turnComplete = (m) => m.serverContent?.turnComplete;

function usageOf(messages) {
  const usage = messages.findLast((m) => m.usageMetadata)?.usageMetadata;
  return usage && {
    promptTokenCount: usage.promptTokenCount,
    responseTokenCount: usage.responseTokenCount,
    totalTokenCount: usage.totalTokenCount,
    responseModality: usage.responseTokensDetails?.[0]?.modality,
  };
}

export async function textTurn(ai) {
  const { session, next, seen } = await open(ai, { responseModalities: [Modality.TEXT] });
  session.sendClientContent({ turns: "Hello from Chromium", turnComplete: true });
  await next(turnComplete);
  session.close();
  return { text: seen.map((m) => m.text ?? "").join(""), usage: usageOf(seen) };
}

export async function toolCall(ai) {
  const { session, next, seen } = await open(ai, {
    responseModalities: [Modality.TEXT], tools: [WEATHER_TOOL],
  });
  session.sendClientContent({ turns: 'get_weather {"city": "Paris"}', turnComplete: true });
  const call = (await next((m) => m.toolCall)).toolCall.functionCalls[0];
  // Gemini API mode refuses a response without the call's id.
  session.sendToolResponse({
    functionResponses: [{ id: call.id, name: call.name, response: { temperature: 21 } }],
  });
  await next(turnComplete);
  session.close();
  return { call, text: seen.map((m) => m.text ?? "").join("") };
}

function tone(seconds, amplitude) {
  const samples = new Int16Array(Math.round(seconds * 16000));
  for (let n = 0; n < samples.length; n++) {
    samples[n] = amplitude * Math.sin((2 * Math.PI * 180 * n) / 16000);
  }
  return new Uint8Array(samples.buffer);
}

function base64(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export async function spokenTurn(ai) {
  const { session, next, seen } = await open(ai, {
    inputAudioTranscription: {}, outputAudioTranscription: {},
  });
  const speech = [...tone(1.0, 7000), ...tone(1.0, 0)];
  for (let start = 0; start < speech.length; start += 640) {
    const chunk = new Uint8Array(speech.slice(start, start + 640));
    session.sendRealtimeInput({ audio: { data: base64(chunk), mimeType: "audio/pcm;rate=16000" } });
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await next(turnComplete);
  session.close();
  return {
    input: seen.map((m) => m.serverContent?.inputTranscription?.text ?? "").join(""),
    output: seen.map((m) => m.serverContent?.outputTranscription?.text ?? "").join(""),
    audioBytes: seen
      .flatMap((m) => m.serverContent?.modelTurn?.parts ?? [])
      .reduce((sum, part) => sum + (part.inlineData ? atob(part.inlineData.data).length : 0), 0),
    usage: usageOf(seen),
  };
}

/** The client kit's microphone and player around the SDK's session (docs/browsers.md). */
export async function kitWithSdk(ai) {
  const kit = await import("/client/live-relay.js");
  const context = new AudioContext();
  await context.resume();
  const player = new kit.AudioPlayer(context);
  await player.start();
  const { session, next, seen } = await open(ai, {
    inputAudioTranscription: {}, outputAudioTranscription: {},
  });
  const play = (message) => {
    for (const part of message.serverContent?.modelTurn?.parts ?? []) {
      if (part.inlineData) player.enqueueBase64(part.inlineData.data);
    }
    if (message.serverContent?.interrupted) player.flush();
  };
  const microphone = new kit.Microphone(context);
  microphone.addEventListener("chunk", (event) => session.sendRealtimeInput({
    audio: { data: kit.encodeBase64(event.detail.pcm), mimeType: kit.INPUT_MIME_TYPE },
  }));
  await microphone.start({ echoCancellation: false, noiseSuppression: false, autoGainControl: false });
  await next((message) => { play(message); return turnComplete(message); });
  microphone.stop();
  const deadline = Date.now() + 10000;
  while (player.playedSeconds < 0.5 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  session.close();
  return {
    input: seen.map((m) => m.serverContent?.inputTranscription?.text ?? "").join(""),
    output: seen.map((m) => m.serverContent?.outputTranscription?.text ?? "").join(""),
    playedSeconds: player.playedSeconds,
  };
}
