// One text turn through the relay with @google/genai in its API-gateway mode, as the README quick start shows.
// Usage: node text_turn.mjs <wss URL> <API key>; prints the reply text, exits non-zero on error.
import { GoogleGenAI, Modality } from "@google/genai";

const [url, apiKey] = process.argv.slice(2);
const ai = new GoogleGenAI({
  vertexai: true,
  httpOptions: { baseUrl: url, headers: { Authorization: `Bearer ${apiKey}` } },
});

let reply = "";
let finish;
const done = new Promise((resolve, reject) => { finish = { resolve, reject }; });
const session = await ai.live.connect({
  model: "gemini-live-2.5-flash",
  config: { responseModalities: [Modality.TEXT] },
  callbacks: {
    onmessage: (message) => {
      reply += message.text ?? "";
      if (message.serverContent?.turnComplete) finish.resolve();
    },
    onerror: (event) => finish.reject(new Error(String(event.message ?? event))),
    onclose: (event) => finish.reject(new Error(`closed ${event.code} ${event.reason}`)),
  },
});
session.sendClientContent({ turns: "Hello from JavaScript", turnComplete: true });
const timeout = setTimeout(() => finish.reject(new Error("no reply in 15 s")), 15000);
await done;
clearTimeout(timeout);
session.close();
console.log(reply);
