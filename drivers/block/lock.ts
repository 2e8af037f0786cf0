// Write locks on image files: one writer per file, across processes, via an O_EXCL lock file.
import fs from "node:fs";
import path from "node:path";
import { ImageAccessError, asImageError } from "./errors.js";

/** A held lock; release() removes the lock file (idempotent). */
export interface WriteLock {
  readonly imagePath: string;
  release(): void;
}

/** Lock file for an image: a hidden sibling named after the image's real path. */
export function lockPathFor(imagePath: string): string {
  const real = fs.realpathSync(imagePath);
  return path.join(path.dirname(real), `.${path.basename(real)}.hv-lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Take the write lock of `imagePath`. A second writer (this process or another) gets LOCKED;
 * a lock left by a process that no longer exists is taken over.
 */
export function acquireWriteLock(imagePath: string): WriteLock {
  let lockPath: string;
  try {
    lockPath = lockPathFor(imagePath);
  } catch (err) {
    throw asImageError(err, imagePath);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lockPath, "wx");
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      let held = true;
      return {
        imagePath,
        release(): void {
          if (!held) return;
          held = false;
          fs.rmSync(lockPath, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw asImageError(err, imagePath);
      let owner = NaN;
      try {
        owner = Number.parseInt(fs.readFileSync(lockPath, "utf8"), 10);
      } catch {
        continue; // vanished meanwhile: retry
      }
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
        throw new ImageAccessError("LOCKED", `image is already opened for writing (process ${owner})`, imagePath);
      }
      fs.rmSync(lockPath, { force: true }); // stale lock of a dead process
    }
  }
  throw new ImageAccessError("LOCKED", "could not take the write lock", imagePath);
}
