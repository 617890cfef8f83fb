/** A setting config.ts refuses; main.ts prints its message and exits with EX_CONFIG. */
export class ConfigError extends Error {}

export const refuse = (variable: string, message: string): never => {
  throw new ConfigError(`invalid configuration:\n  ${variable}: ${message}`);
};
