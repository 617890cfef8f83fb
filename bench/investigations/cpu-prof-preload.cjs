// Loaded into the server by bench/investigations/c100k-load.ts (NODE_OPTIONS=--require …):
// a CPU profile of one phase, started and stopped by the harness over the IPC channel, so
// the profile holds that phase and not the connects before it. Changes nothing else.
"use strict";
const inspector = require("node:inspector");
const fs = require("node:fs");
let session = null;
process.on("message", (m) => {
  if (!m || (m.bench !== "prof-start" && m.bench !== "prof-stop")) return;
  const done = () => process.send?.({ bench: `${m.bench}-done`, id: m.id });
  if (m.bench === "prof-start") {
    session = new inspector.Session();
    session.connect();
    session.post("Profiler.enable", () => session.post("Profiler.start", done));
  } else if (session) {
    session.post("Profiler.stop", (err, result) => {
      if (!err) fs.writeFileSync(m.file, JSON.stringify(result.profile));
      session.disconnect();
      session = null;
      done();
    });
  } else done();
});
// Listening for messages refs the channel; it must not keep the server alive.
process.channel?.unref();
