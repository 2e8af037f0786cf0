// Whether the default guest (Debian's kernel and a busybox initramfs) can be had for a test: it is
// fetched with apt-get on first use; HV_SKIP_LINUX=1 skips the suites that boot it.
import { hostHas } from "./host-tools.js";

/** Can `suite` boot the default guest? When not, a warning says that it is skipped and why. */
export function canFetchGuest(suite: string): boolean {
  const can = hostHas("apt-get") && process.env.HV_SKIP_LINUX !== "1";
  if (!can) console.warn(`${suite}: no apt-get (or HV_SKIP_LINUX=1): skipped`);
  return can;
}
