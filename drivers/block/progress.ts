// Progress bar for long image operations: cli-progress on a TTY, nothing otherwise.
import { createRequire } from "node:module";

/** The part of cli-progress we use (the package ships no types). */
interface SingleBar {
  start(total: number, value: number): void;
  update(value: number): void;
  stop(): void;
}
interface CliProgress {
  SingleBar: new (options: Record<string, unknown>, preset: unknown) => SingleBar;
  Presets: { shades_classic: unknown };
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** A bar on `stream` if it is a TTY; otherwise a no-op. */
export function progressBar(stream: NodeJS.WriteStream, label: string): Progress {
  if (!stream.isTTY) return { update: () => {}, stop: () => {} };
  const cliProgress = createRequire(import.meta.url)("cli-progress") as CliProgress;
  const bar = new cliProgress.SingleBar(
    { stream, format: `${label} [{bar}] {percentage}% | {value}/{total} MiB`, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const mib = (n: number): number => Math.round(n / 1048576);
  return {
    update(done, total) {
      if (!started) {
        bar.start(mib(total), 0);
        started = true;
      }
      bar.update(mib(done));
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
