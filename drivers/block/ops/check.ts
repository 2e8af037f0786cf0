// `img check`: run the format's consistency check and render it like qemu-img.
import { printable } from "../errors.js";
import type { CheckReport, FormatName } from "../image.js";
import { openImage } from "../open.js";

export interface CheckResult extends CheckReport {
  filename: string;
  format: string;
}

/** Open read-only and check; never writes. */
export function checkImage(path: string, format?: FormatName): CheckResult {
  const image = openImage(path, { format });
  try {
    return { filename: path, format: image.format, ...image.check() };
  } finally {
    image.close();
  }
}

export function renderCheck(r: CheckResult): string {
  const lines = [...r.messages];
  if (r.corruptions === 0 && r.leaks === 0) lines.push("No errors were found on the image.");
  if (r.corruptions > 0) {
    lines.push(`${r.corruptions} errors were found on the image.`, "Data may be corrupted, or further writes to the image may corrupt it.");
  }
  if (r.leaks > 0) {
    lines.push(`${r.leaks} leaked clusters were found on the image.`, "This means waste of disk space, but no harm to data.");
  }
  if (r.totalClusters) {
    const pct = ((100 * (r.allocatedClusters ?? 0)) / r.totalClusters).toFixed(2);
    lines.push(`${r.allocatedClusters}/${r.totalClusters} = ${pct}% allocated`);
  }
  return `${lines.map(printable).join("\n")}\n`;
}
