// Host ends of a console for VMs that do not own the terminal (a fleet): a log file, or a Unix
// socket a user attaches to (`socat - UNIX-CONNECT:PATH`, `nc -U PATH`). The driver component
// reaches them only as a ConsoleHost.

import { closeSync, lstatSync, openSync, unlinkSync, writeSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import type { ConsoleHost } from "./console.js";
import { ConsoleChannel } from "./protocol.js";

/** Serial output appended to a file; no input. */
export class FileConsole implements ConsoleHost {
  private readonly fd: number;
  /** The last serial bytes (for panic detection). */
  readonly tail: number[] = [];

  constructor(readonly path: string) {
    this.fd = openSync(path, "a", 0o600);
  }

  write(channel: number, bytes: Uint8Array): void {
    if (channel !== ConsoleChannel.SERIAL0) return;
    writeSync(this.fd, bytes);
    keepTail(this.tail, bytes);
  }

  takeInput(): Uint8Array {
    return new Uint8Array(0);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** How much output a client that attaches late is shown first. */
const BACKLOG_BYTES = 64 * 1024;

/**
 * The serial line on a Unix socket: every attached client sees the output (a client that attaches
 * late first gets the last 64 KiB), and what any of them types is the guest's input.
 */
export class SocketConsole implements ConsoleHost {
  private readonly clients = new Set<Socket>();
  private input: number[] = [];
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;
  readonly tail: number[] = [];
  private readonly server: Server;

  private constructor(
    readonly path: string,
    server: Server,
    private readonly onInput: () => void,
  ) {
    this.server = server;
    server.on("connection", (socket) => this.attach(socket));
  }

  /** Listen at `path` (mode 0600). A stale socket there is replaced; anything else is refused. */
  static async listen(path: string, onInput: () => void): Promise<SocketConsole> {
    let existing;
    try {
      existing = lstatSync(path);
    } catch {
      existing = null;
    }
    if (existing && !existing.isSocket()) throw new Error(`console socket ${path}: something that is not a socket is there`);
    if (existing) unlinkSync(path);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path, readableAll: false, writableAll: false }, () => resolve());
    });
    return new SocketConsole(path, server, onInput);
  }

  write(channel: number, bytes: Uint8Array): void {
    if (channel !== ConsoleChannel.SERIAL0) return;
    const copy = bytes.slice();
    for (const c of this.clients) c.write(copy);
    this.backlog.push(copy);
    this.backlogBytes += copy.length;
    while (this.backlogBytes > BACKLOG_BYTES && this.backlog.length > 1) this.backlogBytes -= this.backlog.shift()!.length;
    keepTail(this.tail, bytes);
  }

  takeInput(): Uint8Array {
    const out = Uint8Array.from(this.input);
    this.input = [];
    return out;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private attach(socket: Socket): void {
    this.clients.add(socket);
    for (const chunk of this.backlog) socket.write(chunk);
    socket.on("data", (data: Buffer) => {
      for (const b of data) this.input.push(b);
      this.onInput();
    });
    socket.on("close", () => this.clients.delete(socket));
    socket.on("error", () => this.clients.delete(socket));
  }
}

function keepTail(tail: number[], bytes: Uint8Array): void {
  for (const b of bytes) tail.push(b);
  if (tail.length > 8192) tail.splice(0, tail.length - 4096);
}
