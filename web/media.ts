/**
 * Media on the web page: what "Attach" sends (with a small thumbnail for images, made in a
 * canvas) and how a message's media shows. Images show their inline thumbnail at once and
 * the full picture once it has loaded; audio gets a player, video a player, anything else a
 * download link. Download URLs are short-lived: each is kept until shortly before it expires.
 */
import type { MediaInfo, SendMediaOptions, TicksClient } from "/sdk/ticks-client.js";

/** The protocol's limit on a thumbnail data URL. */
const THUMBNAIL_MAX = 16 * 1024;
const THUMBNAIL_EDGE = 96;

/** What sendMedia needs about a picked file: its type, name, and for an image its size and thumbnail. */
export async function describeFile(file: File, caption: string): Promise<SendMediaOptions> {
  const options: SendMediaOptions = { mime: file.type || "application/octet-stream", name: file.name, caption };
  if (!file.type.startsWith("image/") || file.type === "image/svg+xml") return options;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, THUMBNAIL_EDGE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d")!.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const thumbnail = canvas.toDataURL("image/jpeg", 0.6);
    return { ...options, width: bitmap.width, height: bitmap.height, ...(thumbnail.length <= THUMBNAIL_MAX ? { thumbnail } : {}) };
  } catch {
    return options; // not decodable here: sent without a preview
  }
}

type Url = { url: string; until: number };
const urls = new Map<string, Promise<Url>>();
/** Full-size images already loaded, by media id: later renders show them at once. */
const loaded = new Set<string>();

/** A download URL for the media, reused until a minute before it expires. */
function urlOf(client: TicksClient, mediaId: string): Promise<string> {
  const cached = urls.get(mediaId);
  const fresh = (u: Url) => u.until - Date.now() > 60_000;
  const next = (async (): Promise<Url> => {
    const known = cached && (await cached.catch(() => null));
    if (known && fresh(known)) return known;
    const reply = await client.call("media:url", { mediaId });
    return { url: new URL(reply.url, location.origin).toString(), until: new Date(reply.expiresAt).getTime() };
  })();
  urls.set(mediaId, next);
  next.catch(() => urls.delete(mediaId));
  return next.then((u) => u.url);
}

/** The element that shows a message's media. */
export function mediaElement(client: TicksClient, media: MediaInfo): HTMLElement {
  const box = document.createElement("div");
  box.className = "media";
  if (media.mime.startsWith("image/") && media.mime !== "image/svg+xml") {
    const img = document.createElement("img");
    img.alt = media.name ?? "photo";
    if (media.width && media.height) {
      img.width = Math.min(240, media.width);
      img.height = Math.round((img.width * media.height) / media.width);
    }
    if (media.thumbnail && !loaded.has(media.mediaId)) img.src = media.thumbnail;
    img.dataset.full = "false";
    box.append(img);
    void urlOf(client, media.mediaId).then((url) => {
      // Swapped in only once loaded, so the thumbnail stays until the full picture can replace it.
      const full = new Image();
      full.onload = () => {
        loaded.add(media.mediaId);
        img.src = url;
        img.dataset.full = "true";
      };
      full.src = url;
    }, () => undefined);
    return box;
  }
  if (media.mime.startsWith("audio/") || media.mime.startsWith("video/")) {
    const player = document.createElement(media.mime.startsWith("audio/") ? "audio" : "video");
    player.controls = true;
    player.preload = "metadata";
    box.append(player);
    void urlOf(client, media.mediaId).then((url) => (player.src = url), () => undefined);
    return box;
  }
  const link = document.createElement("a");
  link.textContent = `${media.name ?? "file"} (${Math.max(1, Math.round(media.size / 1024))} KB)`;
  link.download = media.name ?? "";
  box.append(link);
  void urlOf(client, media.mediaId).then((url) => (link.href = url), () => undefined);
  return box;
}
