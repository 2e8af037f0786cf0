// `img create`: validate the request completely, then create the image.
import { MAX_SAFE, alignUp } from "../bytes.js";
import { ImageArgumentError } from "../errors.js";
import { FORMATS, type CreateOptions } from "../formats.js";
import { HostFile } from "../host-file.js";
import type { FormatName } from "../image.js";
import { openImage, probeFormat, resolveBacking } from "../open.js";

/** Create `path` in `format`. Without a size, an image with a backing file takes the backing's size. */
export function createImage(path: string, format: FormatName, size: number | undefined, options: CreateOptions = {}): void {
  const driver = FORMATS[format];
  HostFile.checkCreatable(path);
  let backing = options.backing ?? null;
  let finalSize = size;
  if (backing) {
    if (!driver.supportsBacking) throw new ImageArgumentError("BAD_ARGUMENT", `format ${format} cannot have a backing file`);
    const target = resolveBacking(backing, path);
    const backingFormat = backing.format ?? probeFormat(target);
    backing = { file: backing.file, format: backingFormat };
    const parent = openImage(target, { format: backingFormat });
    try {
      finalSize ??= parent.virtualSize;
    } finally {
      parent.close();
    }
  }
  if (finalSize === undefined) throw new ImageArgumentError("BAD_ARGUMENT", "an image size is required (or a backing file to take it from)");
  const aligned = alignUp(finalSize, 512);
  if (!Number.isSafeInteger(finalSize) || finalSize < 0 || !Number.isSafeInteger(aligned)) {
    throw new ImageArgumentError("SIZE_OVERFLOW", `invalid image size ${finalSize} (at most ${MAX_SAFE - 511} bytes)`);
  }
  driver.create(path, aligned, { ...options, backing });
}
