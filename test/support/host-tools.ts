// Host programs some tests need (nasm, python3, apt-get): a test asks before it uses one and skips
// with a notice when it is missing.
import { execFileSync } from "node:child_process";

/** Does `command args` (a version query) run on this host? */
export function hostHas(command: string, args: readonly string[] = ["--version"]): boolean {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
