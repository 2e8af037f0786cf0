// The QMP server's Unix socket (`hv run --qmp unix:PATH`): readable and writable by its owner only,
// never put in the place of anything but a stale socket, and removed when hv ends.

import { chmodSync, lstatSync, unlinkSync, type Stats } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import type { VmControl } from "./host-control.js";
import { QmpServer, type QmpServerOptions, type QmpVm, type ShutdownCause } from "./qmp.js";
import type { VmRunResult } from "./vm-runner.js";

/** A client that stops reading is dropped once this much output waits for it. */
const MAX_UNREAD_BYTES = 4 << 20;

/**
 * The socket path of a `--qmp` address: `unix:PATH`, with QEMU's `server` / `server=on` and
 * `nowait` / `wait=off` accepted (that is what hv does anyway). Throws an Error naming the problem.
 */
export function parseQmpAddress(spec: string): string {
  if (!spec.startsWith("unix:")) throw new Error(`--qmp takes unix:PATH, not '${spec}'`);
  const [path, ...options] = spec.slice(5).split(",");
  if (path === "") throw new Error("--qmp unix: needs a path");
  for (const option of options)
    if (!["server", "server=on", "nowait", "wait=off"].includes(option)) throw new Error(`--qmp: '${option}' is not supported (unix:PATH[,server=on][,wait=off])`);
  return path;
}

/** `hv run --qmp`: a QMP server for `vms` on the socket at `path`, with the host's clock and working directory. */
export function startQmp(path: string, options: Pick<QmpServerOptions, "control" | "vms" | "quit" | "migration" | "components">): Promise<QmpListener> {
  const server = new QmpServer({ ...options, now: () => performance.timeOrigin + performance.now(), cwd: process.cwd() });
  return QmpListener.listen(path, server);
}

/** The SHUTDOWN reason for how runVm stopped. */
export function shutdownCause(stop: VmRunResult["stop"]): ShutdownCause {
  return stop === "ended" ? "guest-shutdown" : stop === "quit" ? "host-qmp-quit" : "host-error";
}

export class QmpListener {
  private readonly sockets = new Set<Socket>();
  private closed = false;
  private readonly removeAtExit = () => this.removeSocketFile();

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly qmp: QmpServer,
    /** The socket file we made (device and inode), so that we remove ours and nothing else. */
    private readonly made: Stats,
  ) {
    server.on("connection", (socket) => this.accept(socket));
    process.on("exit", this.removeAtExit);
  }

  /** Listen on `path` (see the file comment); throws an Error naming the problem. */
  static async listen(path: string, qmp: QmpServer): Promise<QmpListener> {
    await clearStaleSocket(path);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => reject(new Error(`cannot listen on '${path}': ${error.code ?? error.message}`)));
      // The socket is made with the umask's mode: with 0177 nobody else can connect even before the chmod.
      const umask = trySetUmask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        if (umask !== null) trySetUmask(umask);
      }
    });
    chmodSync(path, 0o600);
    return new QmpListener(path, server, qmp, lstatSync(path));
  }

  /** An event to every client (QmpServer.emit). */
  emit(event: string, data?: Record<string, unknown>): void {
    if (!this.closed) this.qmp.emit(event, data);
  }

  /** hv is ending: answer what is pending, announce SHUTDOWN, end every connection, remove the socket. */
  async close(cause: ShutdownCause): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    await this.qmp.close(cause);
    for (const socket of this.sockets) {
      socket.end();
      // A client that keeps its end open must not keep hv alive; the writes still go out.
      socket.unref();
    }
    this.removeSocketFile();
    process.off("exit", this.removeAtExit);
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setEncoding("utf8");
    const session = this.qmp.connect({
      send: (line) => {
        if (socket.writableLength > MAX_UNREAD_BYTES) socket.destroy();
        else socket.write(line);
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      end: () => socket.end(),
    });
    socket.on("data", (text: string) => session.feed(text));
    socket.on("error", () => undefined); // a client that went away: "close" follows
    socket.on("close", () => {
      this.sockets.delete(socket);
      session.disconnect();
    });
  }

  private removeSocketFile(): void {
    try {
      const now = lstatSync(this.path);
      if (now.isSocket() && now.ino === this.made.ino && now.dev === this.made.dev) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** Refuses a path that holds anything but a socket, or a socket someone listens on; removes a stale one. */
async function clearStaleSocket(path: string): Promise<void> {
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) throw new Error(`'${path}' exists and is not a socket; hv does not replace it`);
  const refused = await new Promise<string | null>((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(null);
    });
    probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
  if (refused === null) throw new Error(`'${path}' is in use: another process listens on it`);
  if (refused !== "ECONNREFUSED") throw new Error(`cannot tell whether '${path}' is in use (${refused})`);
  unlinkSync(path);
}

/** process.umask(mask), or null where it cannot be set (worker threads). */
function trySetUmask(mask: number): number | null {
  try {
    return process.umask(mask);
  } catch {
    return null;
  }
}
