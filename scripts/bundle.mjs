// Browser bundles, written next to the compiled server (dist/web/):
// - ticks-client.js: the SDK with socket.io-client, as one ES module (GET /sdk/ticks-client.js);
// - app.js: the web chat page, which imports the SDK from /sdk/ticks-client.js at run time.
import { build } from "esbuild";

const common = { bundle: true, format: "esm", platform: "browser", target: "es2020", minify: true, sourcemap: true, logLevel: "warning" };

await build({ ...common, entryPoints: ["src/client/index.ts"], outfile: "dist/web/ticks-client.js" });
await build({
  ...common,
  entryPoints: ["web/app.ts"],
  outfile: "dist/web/app.js",
  // Not bundled: the page loads the same SDK bundle any other page would.
  external: ["/sdk/ticks-client.js"],
});
