// Loaded with `node --expose-gc --require bench/gc-preload.cjs dist/src/main.js` by the
// benchmark only: lets the harness force a full GC (over the IPC channel) right before it
// reads the heap, so "KB per socket" is not GC timing noise. Changes nothing else.
"use strict";
process.on("message", (m) => {
  if (!m || m.bench !== "gc") return;
  if (typeof global.gc === "function") {
    global.gc();
    global.gc();
  }
  process.send?.({ bench: "gc-done", id: m.id });
});
// Listening for messages refs the channel; it must not keep the server alive.
process.channel?.unref();
