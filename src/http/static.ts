import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";

/** The project root, whether running from src/ (tsx) or from the compiled dist/src/. */
function projectRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("package.json not found above " + __dirname);
    dir = parent;
  }
  return dir;
}

type Asset = { file: string; type: string };

const JS = "text/javascript; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";

/**
 * Files the server hands to browsers: the SDK's ES module bundle (always; `npm run build`
 * writes it) and, unless WEB_APP=off, the web chat page built on it. Read once, on first use.
 */
export function staticAssets(options: {
  webApp: boolean;
  authMode: "jwt" | "dev";
  maxContentLength: number;
  /** Where media comes from when not from this server (an S3 bucket): the page may load and upload there. */
  mediaOrigin?: string | null;
}) {
  const media = options.mediaOrigin ? ` ${options.mediaOrigin}` : "";
  const root = projectRoot();
  const assets = new Map<string, Asset>([
    ["/sdk/ticks-client.js", { file: "dist/web/ticks-client.js", type: JS }],
    ["/sdk/ticks-client.js.map", { file: "dist/web/ticks-client.js.map", type: JSON_TYPE }],
  ]);
  if (options.webApp) {
    assets.set("/", { file: "web/index.html", type: "text/html; charset=utf-8" });
    assets.set("/app.js", { file: "dist/web/app.js", type: JS });
    assets.set("/app.js.map", { file: "dist/web/app.js.map", type: JSON_TYPE });
    assets.set("/style.css", { file: "web/style.css", type: "text/css; charset=utf-8" });
  }
  const cache = new Map<string, Buffer | null>();
  const load = (asset: Asset): Buffer | null => {
    if (!cache.has(asset.file)) {
      const file = path.join(root, asset.file);
      cache.set(asset.file, existsSync(file) ? readFileSync(file) : null);
    }
    return cache.get(asset.file)!;
  };

  /** What the page needs to know about this server: how to sign in, how long a message may be. */
  const pageConfig = Buffer.from(JSON.stringify({ authMode: options.authMode, maxContentLength: options.maxContentLength }));

  /** Answers and returns true when `urlPath` is one of the assets. */
  return (req: IncomingMessage, res: ServerResponse, urlPath: string): boolean => {
    if (options.webApp && urlPath === "/app/config.json") {
      res.writeHead(200, { "content-type": JSON_TYPE, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : pageConfig);
      return true;
    }
    const asset = assets.get(urlPath);
    if (!asset) return false;
    const body = load(asset);
    if (!body) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end(`${asset.file} is missing: run \`npm run build\`\n`);
      return true;
    }
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": body.length,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      // The SDK is public code: pages on any origin may import it (their connections still need CORS_ORIGINS).
      ...(urlPath.startsWith("/sdk/") ? { "access-control-allow-origin": "*" } : {}),
      // The page runs only its own scripts: no inline script, so injected markup cannot run.
      ...(asset.type.startsWith("text/html")
        ? { "content-security-policy": `default-src 'self'; connect-src 'self' ws: wss:${media}; img-src 'self' data:${media}; media-src 'self'${media}` }
        : {}),
    });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}
