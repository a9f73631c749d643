// Runs the tests against a live `waggle serve`:
//
//   1. builds cmd/waggle (or uses WAGGLE_BIN),
//   2. creates a temporary Postgres database and picks a Redis key prefix,
//   3. starts `waggle serve --addr 127.0.0.1:<free port>` and waits for its
//      health check,
//   4. runs `node --test` on the compiled *.test.js files with WAGGLE_URL set,
//   5. stops the server, drops the database and deletes the prefix's keys.
//
// With WAGGLE_URL already set it only runs the tests, against that server.
// Postgres and Redis come from WAGGLE_TEST_POSTGRES_URL (an admin
// connection; default postgres://postgres@127.0.0.1:5432/postgres) and
// WAGGLE_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), like the Go tests.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url)); // dist/clients/ts/test
const pkg = resolve(here, "../../../..");
const root = resolve(pkg, "../..");

function log(msg: string): void {
  process.stderr.write(`harness: ${msg}\n`);
}

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: "utf8" });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolvePort(addr.port) : reject(new Error("no port"))));
    });
  });
}

// healthy asks grpc.health.v1.Health/Check over the Connect protocol (JSON),
// so it needs no generated code.
async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
      signal: AbortSignal.timeout(1000),
    });
    // connect-go's grpchealth names the enum value SERVING_STATUS_SERVING.
    const status = ((await res.json()) as { status?: string }).status ?? "";
    return res.ok && /(^|_)SERVING$/.test(status);
  } catch {
    return false;
  }
}

function testFiles(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith(".test.js"))
    .sort()
    .map((f) => join(here, f));
}

function runTests(url: string): Promise<number> {
  // A test that hangs fails after a minute instead of holding CI.
  const args = ["--test", "--test-reporter=spec", "--test-timeout=60000", ...process.argv.slice(2), ...testFiles()];
  log(`node ${args.map((a) => a.replace(pkg + "/", "")).join(" ")}`);
  const child = spawn(process.execPath, args, { stdio: "inherit", env: { ...process.env, WAGGLE_URL: url } });
  return new Promise((resolveCode) => child.on("exit", (code, signal) => resolveCode(code ?? (signal ? 1 : 0))));
}

function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  return exited.finally(() => clearTimeout(timer));
}

async function main(): Promise<number> {
  if (process.env.WAGGLE_URL) {
    return runTests(process.env.WAGGLE_URL);
  }

  const started = Date.now();
  const cleanups: (() => void | Promise<void>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`);
      }
    }
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  process.once("SIGTERM", () => void cleanup().then(() => process.exit(143)));

  try {
    const tmp = mkdtempSync(join(tmpdir(), "waggle-ts-"));
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));

    let bin = process.env.WAGGLE_BIN;
    if (!bin) {
      bin = join(tmp, "waggle");
      log("go build ./cmd/waggle");
      run("go", ["build", "-o", bin, "./cmd/waggle"], { cwd: root });
    }

    const admin = new URL(process.env.WAGGLE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable");
    const db = `waggle_ts_${randomBytes(6).toString("hex")}`;
    run("psql", [admin.href, "-qc", `CREATE DATABASE ${db}`]);
    cleanups.push(() => {
      run("psql", [admin.href, "-qc", `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
    });
    const dbURL = new URL(admin.href);
    dbURL.pathname = `/${db}`;

    const redisURL = process.env.WAGGLE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/0";
    const prefix = `wts:${randomBytes(6).toString("hex")}:`;
    cleanups.push(() => {
      const keys = run("redis-cli", ["-u", redisURL, "--scan", "--pattern", `${prefix}*`]).split("\n").filter(Boolean);
      if (keys.length > 0) run("redis-cli", ["-u", redisURL, "DEL", ...keys]);
    });

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const logFile = join(tmp, "waggle.log");
    const out = openSync(logFile, "a");
    const server = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`], {
      stdio: ["ignore", out, out],
      env: {
        ...process.env,
        WAGGLE_POSTGRES_URL: dbURL.href,
        WAGGLE_REDIS_URL: redisURL,
        WAGGLE_REDIS_PREFIX: prefix,
        WAGGLE_TOKEN_KEY: randomBytes(32).toString("base64"),
        WAGGLE_INTERNAL_SECRET: randomBytes(24).toString("base64"),
        WAGGLE_LOG_LEVEL: process.env.WAGGLE_LOG_LEVEL ?? "info",
        // Every test registers from 127.0.0.1: lift the per-address limits.
        WAGGLE_LOGIN_LIMIT: "-1",
        WAGGLE_LOGIN_ADDRESS_LIMIT: "-1",
        WAGGLE_REGISTER_LIMIT: "-1",
        WAGGLE_REFRESH_LIMIT: "-1",
      },
    });
    const exited = new Promise<void>((resolveExit) => server.once("exit", () => resolveExit()));
    // Stop the server before dropping its database (cleanups run in reverse).
    cleanups.push(() => stop(server, exited));
    const serverLog = () => readFileSync(logFile, "utf8");

    const deadline = Date.now() + 30_000;
    while (!(await healthy(url))) {
      if (server.exitCode !== null) throw new Error(`waggle serve exited with ${server.exitCode}:\n${serverLog()}`);
      if (Date.now() > deadline) throw new Error(`waggle serve not healthy after 30s:\n${serverLog()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    log(`waggle serve is up on ${url} (database ${db}, Redis prefix ${prefix}) after ${Date.now() - started} ms`);

    const code = await runTests(url);
    if (code !== 0) {
      log(`tests failed; the server's log:\n${serverLog()}`);
    }
    return code;
  } catch (e) {
    log((e as Error).message);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
