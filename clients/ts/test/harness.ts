// Runs the tests against a live `waggle serve`, once on each deployment:
//
//   1. builds cmd/waggle (or uses WAGGLE_BIN),
//   2. for each deployment (WAGGLE_TS_DEPLOYMENTS, comma-separated; default
//      "postgres+redis,embedded"):
//      - postgres+redis: creates a temporary Postgres database and picks a
//        Redis key prefix;
//      - embedded: neither, only a temporary --data-dir;
//   3. starts `waggle serve --addr 127.0.0.1:<free port>` and waits for its
//      health check,
//   4. runs `node --test` on the compiled *.test.js files with WAGGLE_URL set,
//   5. stops the server, drops the database and deletes the prefix's keys
//      (or the data directory).
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

type Cleanups = (() => void | Promise<void>)[];

// deployments prepare the server's environment, registering what to undo.
const deployments: Record<string, (tmp: string, cleanups: Cleanups) => { env: Record<string, string>; about: string }> = {
  "postgres+redis": (_tmp, cleanups) => {
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
    return {
      env: {
        WAGGLE_POSTGRES_URL: dbURL.href,
        WAGGLE_REDIS_URL: redisURL,
        WAGGLE_REDIS_PREFIX: prefix,
        WAGGLE_TOKEN_KEY: randomBytes(32).toString("base64"),
        WAGGLE_INTERNAL_SECRET: randomBytes(24).toString("base64"),
      },
      about: `database ${db}, Redis prefix ${prefix}`,
    };
  },
  // Nothing configured: the server keeps its data and keys in the directory.
  embedded: (tmp) => {
    const dataDir = join(tmp, "data");
    return { env: { WAGGLE_DATA_DIR: dataDir }, about: `data directory ${dataDir}` };
  },
};

// serverEnv is this process's environment without WAGGLE_ settings, which
// would choose the stack, plus env.
function serverEnv(env: Record<string, string>): Record<string, string | undefined> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("WAGGLE_")));
  return {
    ...base,
    ...env,
    WAGGLE_LOG_LEVEL: process.env.WAGGLE_LOG_LEVEL ?? "info",
    // Every test registers from 127.0.0.1: lift the per-address limits.
    WAGGLE_LOGIN_LIMIT: "-1",
    WAGGLE_LOGIN_ADDRESS_LIMIT: "-1",
    WAGGLE_REGISTER_LIMIT: "-1",
    WAGGLE_REFRESH_LIMIT: "-1",
  };
}

async function runOn(name: string, bin: string, tmp: string, cleanups: Cleanups): Promise<number> {
  const started = Date.now();
  const { env, about } = deployments[name](tmp, cleanups);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(tmp, "waggle.log");
  const out = openSync(logFile, "a");
  const server = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`], { stdio: ["ignore", out, out], env: serverEnv(env) });
  const exited = new Promise<void>((resolveExit) => server.once("exit", () => resolveExit()));
  // Stop the server before dropping its database (cleanups run in reverse).
  cleanups.push(() => stop(server, exited));
  const serverLog = () => readFileSync(logFile, "utf8");

  const deadline = Date.now() + 30_000;
  while (!(await healthy(url))) {
    if (server.exitCode !== null) throw new Error(`waggle serve (${name}) exited with ${server.exitCode}:\n${serverLog()}`);
    if (Date.now() > deadline) throw new Error(`waggle serve (${name}) not healthy after 30s:\n${serverLog()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  log(`${name}: waggle serve is up on ${url} (${about}) after ${Date.now() - started} ms`);

  const code = await runTests(url);
  if (code !== 0) {
    log(`${name}: tests failed; the server's log:\n${serverLog()}`);
  }
  return code;
}

async function main(): Promise<number> {
  if (process.env.WAGGLE_URL) {
    return runTests(process.env.WAGGLE_URL);
  }
  const names = (process.env.WAGGLE_TS_DEPLOYMENTS ?? Object.keys(deployments).join(",")).split(",").filter(Boolean);
  const unknown = names.filter((n) => !(n in deployments));
  if (unknown.length > 0) {
    log(`unknown deployment ${unknown.join(", ")} in WAGGLE_TS_DEPLOYMENTS (known: ${Object.keys(deployments).join(", ")})`);
    return 2;
  }

  const cleanups: Cleanups = [];
  // unwind runs the cleanups registered after the first downTo, newest first.
  const unwind = async (downTo: number) => {
    while (cleanups.length > downTo) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`);
      }
    }
  };
  const cleanup = () => unwind(0);
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

    const failed: string[] = [];
    for (const name of names) {
      const mark = cleanups.length;
      try {
        if ((await runOn(name, bin, mkdtempSync(join(tmp, "run-")), cleanups)) !== 0) failed.push(name);
      } finally {
        // Undo this deployment's set-up before the next one starts.
        await unwind(mark);
      }
    }
    if (failed.length > 0) {
      log(`tests failed on: ${failed.join(", ")}`);
      return 1;
    }
    log(`tests passed on: ${names.join(", ")}`);
    return 0;
  } catch (e) {
    log((e as Error).message);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
