/**
 * How tokens are verified, chosen from the JWT_* / JWKS_* variables (config.ts reads them):
 * exactly one way in jwt mode, none in dev mode, and any combination that makes no sense refused.
 */
import { describePublicKey } from "./auth/publicKey";
import { refuse } from "./configParts";

/** Claims checked besides the signature; a field is present only when set. */
export type ClaimChecks = { issuer?: string; audience?: string };
export type JwksConfig = { url: string; cooldownMs: number; cacheMaxAgeMs: number; timeoutMs: number };
export type AuthConfig =
  | ({ mode: "jwt"; secret: string } & ClaimChecks)
  | ({ mode: "jwt"; publicKey: { pem: string; algorithms: string[] } } & ClaimChecks)
  | ({ mode: "jwt"; jwks: JwksConfig } & ClaimChecks)
  | { mode: "dev" };

/** The variables authConfig reads, as config.ts's schema parsed them. */
export type AuthEnv = {
  AUTH_MODE?: "jwt" | "dev";
  JWT_SECRET?: string;
  JWT_PUBLIC_KEY?: string;
  JWT_JWKS_URL?: string;
  JWT_ISSUER?: string;
  JWT_AUDIENCE?: string;
  JWKS_COOLDOWN_MS?: number;
  JWKS_CACHE_MAX_AGE_MS?: number;
  JWKS_TIMEOUT_MS?: number;
};

/** One way to verify tokens, chosen from the variables; any combination that makes no sense is refused. */
export function authConfig(e: AuthEnv, production: boolean): AuthConfig {
  const keys = (["JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"] as const).filter((k) => e[k] !== undefined);
  const mode = e.AUTH_MODE ?? (keys.length ? "jwt" : "dev");
  if (mode === "dev" && production) refuse("AUTH_MODE", "dev is refused with NODE_ENV=production (set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL)");
  const jwksTuning = (["JWKS_COOLDOWN_MS", "JWKS_CACHE_MAX_AGE_MS", "JWKS_TIMEOUT_MS"] as const).filter((k) => e[k] !== undefined);
  if (mode === "dev") {
    // JWT_SECRET next to dev mode was accepted before and stays so; the newer settings would be silently ignored.
    const ignored = (["JWT_PUBLIC_KEY", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", ...jwksTuning] as const).find(
      (k) => e[k] !== undefined,
    );
    if (ignored) refuse(ignored, "set, but AUTH_MODE=dev trusts auth.userId and verifies no token; remove one of the two");
    return { mode };
  }
  if (keys.length === 0) refuse("AUTH_MODE", "jwt needs one of JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL");
  if (keys.length > 1) refuse(keys[1]!, `cannot be combined with ${keys[0]}: give exactly one way to verify tokens`);
  if (jwksTuning.length && !e.JWT_JWKS_URL) refuse(jwksTuning[0]!, "only applies with JWT_JWKS_URL, which is not set");
  const claims: ClaimChecks = {
    ...(e.JWT_ISSUER !== undefined ? { issuer: e.JWT_ISSUER } : {}),
    ...(e.JWT_AUDIENCE !== undefined ? { audience: e.JWT_AUDIENCE } : {}),
  };
  if (e.JWT_SECRET) return { mode, secret: e.JWT_SECRET, ...claims };
  if (e.JWT_PUBLIC_KEY) {
    try {
      return { mode, publicKey: describePublicKey(e.JWT_PUBLIC_KEY), ...claims };
    } catch (err) {
      return refuse("JWT_PUBLIC_KEY", (err as Error).message);
    }
  }
  return {
    mode,
    jwks: {
      url: e.JWT_JWKS_URL!,
      cooldownMs: e.JWKS_COOLDOWN_MS ?? 30_000,
      cacheMaxAgeMs: e.JWKS_CACHE_MAX_AGE_MS ?? 600_000,
      timeoutMs: e.JWKS_TIMEOUT_MS ?? 5000,
    },
    ...claims,
  };
}
