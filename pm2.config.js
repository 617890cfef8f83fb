/**
 * PM2 ecosystem file: `npx pm2 start pm2.config.js` (after `npm run build`).
 * Cluster mode runs N copies of the compiled server on one port; Redis (REDIS_URL) carries
 * rooms between them and PostgreSQL (DATABASE_URL) holds every message. Without sticky
 * sessions, clients must connect with `transports: ["websocket"]` (long-polling is refused).
 */
module.exports = {
  apps: [
    {
      name: "ticks",
      // Cluster mode ignores `interpreter`: it must be compiled JavaScript.
      script: "./dist/src/main.js",
      exec_mode: "cluster",
      instances: process.env.INSTANCES || "max",
      // A worker gets traffic only after process.send("ready"): database, Redis, adapter up.
      wait_ready: true,
      listen_timeout: 20000,
      // SIGINT first: the worker stops accepting, finishes in-flight sends, closes its
      // sockets (clients reconnect to another worker); SIGKILL only after this long.
      kill_timeout: 15000,
      max_memory_restart: "1G",
      env: {
        NODE_ENV: "production",
      },
    },
  ],
};
