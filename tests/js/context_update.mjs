// A session that changes its context mid-way with sendContextUpdate, then asks for a turn.
// Usage: node context_update.mjs <vertex|gemini> <base URL> <credential> <update as JSON> <text>
// Prints one JSON line: the reply text, the tool calls and how the session closed (if it did).
import { GoogleGenAI, Modality } from "@google/genai";

const [mode, baseUrl, credential, update, text] = process.argv.slice(2);
const ai = mode === "vertex"
  ? new GoogleGenAI({ vertexai: true, httpOptions: { baseUrl,
      headers: { Authorization: `Bearer ${credential}` } } })
  : new GoogleGenAI({ apiKey: credential, httpOptions: { baseUrl } });

const seen = { reply: "", toolCalls: [], closed: null };
let finish;
const done = new Promise((resolve) => { finish = resolve; });
const session = await ai.live.connect({
  model: "gemini-live-2.5-flash",
  config: { responseModalities: [Modality.TEXT] },
  callbacks: {
    onmessage: (message) => {
      seen.reply += message.text ?? "";
      for (const call of message.toolCall?.functionCalls ?? []) seen.toolCalls.push(call.name);
      if (message.serverContent?.turnComplete || message.toolCall) finish();
    },
    onclose: (event) => { seen.closed = { code: event.code, reason: event.reason }; finish(); },
  },
});
session.sendContextUpdate(JSON.parse(update));
session.sendRealtimeInput({ text });
const timeout = setTimeout(finish, 15000);
await done;
clearTimeout(timeout);
session.close();
console.log(JSON.stringify(seen));
