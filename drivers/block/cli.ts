// `hv img`: disk image commands in the spirit of qemu-img (create, info, convert, check, compare, rebase).
import os from "node:os";
import { Command, InvalidArgumentError } from "commander";
import { parseSize } from "./bytes.js";
import { ImageArgumentError, ImageError } from "./errors.js";
import { parseFormatName, type CreateOptions } from "./formats.js";
import type { FormatName } from "./image.js";
import { openImage } from "./open.js";
import { checkImage, renderCheck } from "./ops/check.js";
import { compareImages } from "./ops/compare.js";
import { convertImage } from "./ops/convert.js";
import { createImage } from "./ops/create.js";
import { chainInfo, renderInfo } from "./ops/info.js";
import { rebaseImage } from "./ops/rebase.js";
import { progressBar } from "./progress.js";

/** Where the commands write; tests pass their own. */
export interface ImgIo {
  stdout: (text: string) => void;
  stderr: NodeJS.WriteStream | { write: (text: string) => unknown; isTTY?: boolean };
  setExitCode: (code: number) => void;
  /**
   * Call `handler` on SIGINT, SIGTERM or SIGHUP until the returned function is called. Long commands use it
   * to stop cleanly (convert removes its temporary folder) instead of dying mid-write.
   */
  onInterrupt?: (handler: (signal: NodeJS.Signals) => void) => () => void;
}

/** Ctrl-C, kill, and the terminal going away. */
const INTERRUPTS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

const defaultIo = (): ImgIo => ({
  stdout: (t) => process.stdout.write(t),
  stderr: process.stderr,
  setExitCode: (c) => {
    process.exitCode = c;
  },
  onInterrupt: (handler) => {
    for (const s of INTERRUPTS) process.on(s, handler);
    return () => {
      for (const s of INTERRUPTS) process.off(s, handler);
    };
  },
});

const formatArg = (value: string): FormatName => {
  try {
    return parseFormatName(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

/** Parse `-o key=value,key=value` into create options. */
function parseCreateOptions(text: string | undefined): CreateOptions {
  const out: CreateOptions = {};
  if (!text) return out;
  for (const item of text.split(",")) {
    const [key, value] = item.split("=", 2);
    if (!key || value === undefined) throw new ImageArgumentError("BAD_ARGUMENT", `bad option '${item}' (expected key=value)`);
    if (key === "subformat") out.subformat = value;
    else if (key === "compat") out.compat = value;
    else if (key === "cluster_size") {
      const size = parseSize(value);
      if (size === undefined) throw new ImageArgumentError("BAD_ARGUMENT", `bad cluster_size '${value}'`);
      out.clusterSize = size;
    } else throw new ImageArgumentError("BAD_ARGUMENT", `unknown option '${key}' (supported: subformat, compat, cluster_size)`);
  }
  return out;
}

/** Register `img` and its subcommands on `program`. */
export function registerImgCommand(program: Command, io: ImgIo = defaultIo()): Command {
  const img = program.command("img").description("create, inspect, convert and check disk images (raw, qcow2, vpc/vhd, vmdk)");
  const fail = (code: number) => (err: unknown): void => {
    if (!(err instanceof ImageError)) throw err;
    io.stderr.write(`hv img: ${err.message} [${err.code}]\n`);
    io.setExitCode(code);
  };
  const run = (code: number, body: () => void): void => {
    try {
      body();
    } catch (err) {
      fail(code)(err);
    }
  };

  img.command("create")
    .description("create an empty image; SIZE takes K, M, G, T suffixes (binary); with -b, SIZE defaults to the backing file's size")
    .requiredOption("-f, --format <fmt>", "image format: raw, qcow2, vpc (or vhd), vmdk", formatArg)
    .option("-b, --backing <file>", "backing file (qcow2, vpc differencing, vmdk); relative names are relative to FILE")
    .option("-F, --backing-format <fmt>", "format of the backing file (probed if omitted)", formatArg)
    .option("-o, --options <list>", "comma-separated options: compat=0.10|1.1, cluster_size=SIZE (qcow2); subformat=dynamic|fixed (vpc), monolithicSparse|monolithicFlat (vmdk)")
    .argument("<file>", "image to create (an existing regular file is emptied in place, keeping its owner and mode; links and special files are refused)")
    .argument("[size]", "virtual size, e.g. 10G")
    .action((file: string, sizeText: string | undefined, opts: { format: FormatName; backing?: string; backingFormat?: FormatName; options?: string }) => {
      run(1, () => {
        const size = sizeText === undefined ? undefined : parseSize(sizeText);
        if (sizeText !== undefined && size === undefined) {
          throw new ImageArgumentError("BAD_ARGUMENT", `invalid size '${sizeText}' (use a number with an optional K, M, G or T suffix)`);
        }
        const options = parseCreateOptions(opts.options);
        createImage(file, opts.format, size, {
          ...options,
          backing: opts.backing ? { file: opts.backing, format: opts.backingFormat } : null,
        });
        io.stdout(`Formatting '${file}', fmt=${opts.format}${size !== undefined ? ` size=${size}` : ""}${opts.backing ? ` backing_file=${opts.backing}` : ""}\n`);
      });
    });

  img.command("info")
    .description("show format, virtual size, allocated size and the backing chain of an image")
    .option("-f, --format <fmt>", "image format (probed if omitted)", formatArg)
    .option("--json", "print JSON (an array: the image, then each backing file)")
    .argument("<file>")
    .action((file: string, opts: { format?: FormatName; json?: boolean }) => {
      run(1, () => {
        const image = openImage(file, { format: opts.format });
        try {
          const infos = chainInfo(image);
          io.stdout(opts.json ? `${JSON.stringify(infos, null, 2)}\n` : `${infos.map(renderInfo).join("\n\n")}\n`);
        } finally {
          image.close();
        }
      });
    });

  img.command("convert")
    .description("copy an image (with its backing chain flattened) into a new image, skipping zeros; writes a temporary file and renames it at the end (an existing file keeps its owner and mode); a device is written through (raw only); links, FIFOs and directories are refused; SIGINT, SIGTERM and SIGHUP stop it and leave nothing behind")
    .option("-f, --format <fmt>", "source format (probed if omitted)", formatArg)
    .requiredOption("-O, --output-format <fmt>", "target format: raw, qcow2, vpc (or vhd), vmdk", formatArg)
    .option("-o, --options <list>", "target options, as for create")
    .option("-q, --quiet", "no progress bar (there is none unless stderr is a terminal)")
    .argument("<source>")
    .argument("<target>")
    .action(async (source: string, target: string, opts: { format?: FormatName; outputFormat: FormatName; options?: string; quiet?: boolean }) => {
      const interrupt = new AbortController();
      const stopListening = io.onInterrupt?.((signal) => interrupt.abort(signal));
      const bar = opts.quiet ? null : progressBar(io.stderr as NodeJS.WriteStream, "convert");
      let failure: { error: unknown } | null = null;
      try {
        const create = parseCreateOptions(opts.options);
        await convertImage(source, target, {
          sourceFormat: opts.format,
          targetFormat: opts.outputFormat,
          create,
          progress: bar ? (d, t) => bar.update(d, t) : undefined,
          signal: interrupt.signal,
        });
      } catch (error) {
        failure = { error };
      } finally {
        stopListening?.();
        bar?.stop();
      }
      if (!failure) return;
      fail(1)(failure.error);
      // Exit as a shell reports death by that signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
      if (interrupt.signal.aborted) io.setExitCode(128 + (os.constants.signals[interrupt.signal.reason as NodeJS.Signals] ?? 0));
    });

  img.command("check")
    .description("check an image for corruptions and leaked clusters; exit 0 clean, 2 corruptions, 3 leaks only, 1 the check could not run")
    .option("-f, --format <fmt>", "image format (probed if omitted)", formatArg)
    .option("--json", "print the result as JSON")
    .argument("<file>")
    .action((file: string, opts: { format?: FormatName; json?: boolean }) => {
      run(1, () => {
        const result = checkImage(file, opts.format);
        io.stdout(opts.json ? `${JSON.stringify(result, null, 2)}\n` : renderCheck(result));
        io.setExitCode(result.corruptions > 0 ? 2 : result.leaks > 0 ? 3 : 0);
      });
    });

  img.command("compare")
    .description("compare the content two images show (backing chains included); exit 0 identical, 1 different, 2 error")
    .option("-f, --format-a <fmt>", "format of the first image", formatArg)
    .option("-F, --format-b <fmt>", "format of the second image", formatArg)
    .option("-s, --strict", "images of different sizes are different")
    .argument("<a>")
    .argument("<b>")
    .action((a: string, b: string, opts: { formatA?: FormatName; formatB?: FormatName; strict?: boolean }) => {
      run(2, () => {
        const r = compareImages(a, b, { a: opts.formatA, b: opts.formatB });
        if (r.sizeMismatch) {
          if (opts.strict) {
            io.stdout("Strict mode: Image size mismatch!\n");
            io.setExitCode(1);
            return;
          }
          io.stdout("Warning: Image size mismatch!\n");
        }
        if (r.identical) {
          io.stdout("Images are identical.\n");
          io.setExitCode(0);
        } else {
          io.stdout(`Content mismatch at offset ${r.offset}!\n`);
          io.setExitCode(1);
        }
      });
    });

  img.command("rebase")
    .description("change the backing file of a qcow2 image, differencing VHD (VHD parent) or VMDK (VMDK parent); by default (safe mode) copies data so the visible content stays the same")
    .option("-f, --format <fmt>", "image format (probed if omitted)", formatArg)
    .requiredOption("-b, --backing <file>", "new backing file (\"\" for none); relative names are relative to FILE")
    .option("-F, --backing-format <fmt>", "format of the new backing file (probed if omitted)", formatArg)
    .option("-u, --unsafe", "only rewrite the name; the caller vouches that the content is the same")
    .argument("<file>")
    .action((file: string, opts: { format?: FormatName; backing: string; backingFormat?: FormatName; unsafe?: boolean }) => {
      run(1, () => rebaseImage(file, { format: opts.format, backing: opts.backing, backingFormat: opts.backingFormat, unsafe: opts.unsafe }));
    });

  return img;
}
