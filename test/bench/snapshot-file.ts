// Benchmark: snapshot files of a 128 MiB guest whose RAM is half zero pages, a quarter random and a
// quarter text-like. Prints save time (plain and --compress), file size against the non-zero page
// bytes, open time (header + index: what restore waits for before the first instruction), a lazy
// page read, and an eager readAll. HV_BENCH_SNAPSHOT_DIR picks the folder (default: the OS temp
// folder, a real disk, so the save's fsync is counted); HV_BENCH_SNAPSHOT_MIB the RAM size.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PAGE_SIZE, openSnapshot, writeSnapshot } from "../../services/snapshot/file.js";
import { fillRandom, fillText, sampleContents } from "../../services/snapshot/test-util.js";

const MIB = Number(process.env.HV_BENCH_SNAPSHOT_MIB ?? 128);
const REPS = Number(process.env.HV_BENCH_SNAPSHOT_REPS ?? 5);
const dir = fs.mkdtempSync(path.join(process.env.HV_BENCH_SNAPSHOT_DIR ?? os.tmpdir(), "hv-bench-snap-"));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function time(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

const pages = (MIB * 1024 * 1024) / PAGE_SIZE;
const contents = sampleContents(pages);
contents.ram.fill(0);
let nonZero = 0;
for (let n = 0; n < pages; n++) {
  const page = contents.ram.subarray(n * PAGE_SIZE, (n + 1) * PAGE_SIZE);
  if (n % 4 === 1) fillRandom(page, n + 1);
  else if (n % 4 === 3) fillText(page, n + 1);
  else continue;
  nonZero++;
}
const nonZeroBytes = nonZero * PAGE_SIZE;
console.log(`RAM ${MIB} MiB: ${nonZero} non-zero pages (${(nonZeroBytes / 2 ** 20).toFixed(0)} MiB), in ${dir}`);

try {
  for (const compress of [false, true]) {
    const file = path.join(dir, compress ? "vm-compressed.snap" : "vm.snap");
    let bytes = 0;
    const save = median(Array.from({ length: REPS }, () => time(() => (bytes = writeSnapshot(file, contents, { compress }).bytes))));
    const open = median(Array.from({ length: REPS * 4 }, () => time(() => openSnapshot(file).close())));
    const reader = openSnapshot(file);
    const page = new Uint8Array(PAGE_SIZE);
    const firstPage = time(() => reader.readPage(pages - 1, page));
    const ram = new Uint8Array(contents.ram.length);
    ram.fill(1); // touch it, so readAll's time is not page faults
    const readAll = median(Array.from({ length: REPS }, () => time(() => reader.readAll(ram))));
    if (Buffer.compare(ram, contents.ram) !== 0) throw new Error("readAll did not give back the RAM");
    reader.close();
    const tag = compress ? "compressed" : "plain";
    console.log(
      `${tag}: save ${save.toFixed(0)} ms, file ${(bytes / 2 ** 20).toFixed(1)} MiB = ${(bytes / nonZeroBytes).toFixed(4)} x non-zero pages, ` +
        `open ${open.toFixed(2)} ms, first lazy page ${firstPage.toFixed(2)} ms, readAll ${readAll.toFixed(0)} ms`,
    );
    console.log(`snapshot_${tag}_save_ms=${save.toFixed(0)} snapshot_${tag}_ratio=${(bytes / nonZeroBytes).toFixed(4)} snapshot_${tag}_open_ms=${open.toFixed(2)}`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
