/**
 * Keys from an identity provider's JSON Web Key Set, looked up by (issuer, kid).
 *
 * Why the issuer is part of the lookup: Centrifugo's JWKS cache was keyed by `kid` alone
 * (GHSA-g6vg-wj8f-48cj, 2026). `kid`s are not unique across providers ("default", "1"…), so
 * once issuer A's key sat in the cache, a token claiming issuer B with the same `kid` was
 * verified with A's key: whoever could mint tokens for A could act as B's users. Here each
 * trusted issuer owns its own key set (fetched from its own URL only) and a token's claimed
 * `iss` picks the set before its `kid` picks the key; a token naming an issuer that is not
 * trusted is refused before any key is looked up or fetched.
 *
 * Fetching, caching (JWKS_CACHE_MAX_AGE_MS), the timeout (JWKS_TIMEOUT_MS) and the cooldown
 * (JWKS_COOLDOWN_MS: an unknown `kid` fetches again only that long after the last successful
 * fetch, so a flood of made-up `kid`s costs the provider at most one request per cooldown)
 * are jose's `createRemoteJWKSet`. What jose leaves open is a provider that is down: every
 * token would try again at once. `backoffFetch` holds failed fetches back for a second.
 */
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  errors,
  type CryptoKey,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
} from "jose";
import type { JwksConfig } from "../config";

/** After a failed fetch (down, non-200, not a key set), the next attempt waits at least this long. */
export const JWKS_RETRY_MS = 1000;

export type KeyLookup = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

export type JwksEvents = {
  /** A fetch failed (the caller logs it, throttled). */
  fetchFailed?: (err: unknown) => void;
};

/**
 * @param issuer the trusted issuer whose keys the URL serves; without one, the URL is the only
 *   trust domain and any `iss` (the signature still has to verify with its keys) is looked up there.
 */
export function issuerScopedKeys(config: JwksConfig, issuer: string | undefined, events: JwksEvents = {}): KeyLookup {
  const sets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  const trustDomain = issuer ?? `url:${config.url}`;
  sets.set(
    trustDomain,
    createRemoteJWKSet(new URL(config.url), {
      cooldownDuration: config.cooldownMs,
      cacheMaxAge: config.cacheMaxAgeMs,
      timeoutDuration: config.timeoutMs,
      [customFetch]: backoffFetch(events),
    }),
  );
  return async (header, token) => {
    const claimed = claimedIssuer(token);
    const set = sets.get(issuer === undefined ? trustDomain : (claimed ?? ""));
    if (!set) throw new errors.JWTClaimValidationFailed('unexpected "iss" claim value', {}, "iss", "check_failed");
    return set(header, token);
  };
}

/** The token's `iss`, read before the signature is checked: it only chooses where to look. */
function claimedIssuer(token: FlattenedJWSInput): string | undefined {
  try {
    const iss = decodeJwt(`${token.protected ?? ""}.${token.payload}.`).iss;
    return typeof iss === "string" ? iss : undefined;
  } catch {
    return undefined;
  }
}

/**
 * fetch, except that within JWKS_RETRY_MS of a failed fetch it fails at once without asking
 * the provider again. A 200 whose body is not a key set counts as failed too.
 */
function backoffFetch(events: JwksEvents) {
  let failedAt = -Infinity;
  // A timeout stays what it is (jose makes it JWKSTimeout); anything else becomes a JOSEError,
  // so the verifier counts it as a refused token, not as a bug of ours.
  const failed = (err: unknown): never => {
    failedAt = Date.now();
    events.fetchFailed?.(err);
    if (err instanceof errors.JOSEError || (err instanceof Error && err.name === "TimeoutError")) throw err;
    throw new errors.JOSEError(`JWKS endpoint unreachable: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  };
  return async (url: string, options: RequestInit): Promise<Response> => {
    if (Date.now() - failedAt < JWKS_RETRY_MS) {
      throw new errors.JOSEError("JWKS endpoint failed moments ago; not asking again yet");
    }
    let response: Response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      return failed(err);
    }
    if (response.status !== 200) return failed(new errors.JOSEError(`JWKS endpoint answered HTTP ${response.status}`));
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      return failed(err);
    }
    try {
      const body = JSON.parse(text) as { keys?: unknown };
      if (!Array.isArray(body?.keys)) throw new Error("no keys array");
    } catch (err) {
      return failed(new errors.JWKSInvalid(`JWKS endpoint did not answer a JSON Web Key Set (${(err as Error).message})`));
    }
    return new Response(text, { status: 200, headers: response.headers });
  };
}
