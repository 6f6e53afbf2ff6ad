// gemini-3.8-live through the relay with @google/genai, as docs/clients.md shows: audio out with
// its transcript, a custom vocabulary, and a function that does not block, answered by name.
// Usage: node current_model.mjs <wss URL> <API key>; prints the transcripts, exits non-zero on error.
import { FunctionResponseScheduling, GoogleGenAI, Modality } from "@google/genai";

const [url, apiKey] = process.argv.slice(2);
const ai = new GoogleGenAI({
  vertexai: true,
  httpOptions: { baseUrl: url, headers: { Authorization: `Bearer ${apiKey}` } },
});

let transcript = "";
const turns = [];
let failed;
const failure = new Promise((_, reject) => { failed = reject; });
let turnEnded = () => {};
const session = await ai.live.connect({
  model: "gemini-3.8-live",
  config: {
    responseModalities: [Modality.AUDIO],
    outputAudioTranscription: {},
    inputAudioTranscription: { customVocabulary: ["Tibbles"] },
    tools: [{ functionDeclarations: [{ name: "get_weather" }] }],
  },
  callbacks: {
    onmessage: (message) => {
      transcript += message.serverContent?.outputTranscription?.text ?? "";
      for (const call of message.toolCall?.functionCalls ?? []) turns.push(call);
      if (message.serverContent?.turnComplete) turnEnded();
    },
    onerror: (event) => failed(new Error(String(event.message ?? event))),
    onclose: (event) => failed(new Error(`closed ${event.code} ${event.reason}`)),
  },
});
const turnComplete = () => Promise.race([
  new Promise((resolve) => { turnEnded = resolve; }),
  failure,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no turn in 15 s")), 15000)),
]);

let ended = turnComplete();
session.sendRealtimeInput({ text: "get_weather please" });
await ended;  // the call ends its turn: it does not block
ended = turnComplete();
session.sendToolResponse({
  functionResponses: [{
    name: "get_weather",
    response: { temp_c: 21 },
    scheduling: FunctionResponseScheduling.WHEN_IDLE,
  }],
});
await ended;
session.close();
console.log(JSON.stringify({ calls: turns.map((call) => call.name), transcript }));
