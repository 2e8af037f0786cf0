// `img info`: what an image is: format, sizes, backing chain, format-specific facts.
import { chainOf, type BlockImage } from "../image.js";
import { formatSize } from "../bytes.js";
import { printable } from "../errors.js";
import { resolveBacking } from "../open.js";

export interface ImageInfo {
  filename: string;
  format: string;
  "virtual-size": number;
  "actual-size": number;
  "cluster-size": number;
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  "backing-filename-format"?: string;
  "format-specific": Record<string, string | number | boolean>;
}

export function imageInfo(image: BlockImage): ImageInfo {
  const info: ImageInfo = {
    filename: image.path,
    format: image.format,
    "virtual-size": image.virtualSize,
    "actual-size": image.allocatedBytes(),
    "cluster-size": image.clusterSize,
    "format-specific": image.details(),
  };
  if (image.backingRef) {
    info["backing-filename"] = image.backingRef.file;
    info["full-backing-filename"] = resolveBacking(image.backingRef, image.path);
    if (image.backing) info["backing-filename-format"] = image.backing.format;
  }
  return info;
}

/** Info for the image and every image below it, top first. */
export function chainInfo(image: BlockImage): ImageInfo[] {
  return chainOf(image).map(imageInfo);
}

export function renderInfo(info: ImageInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${formatSize(info["virtual-size"])} (${info["virtual-size"]} bytes)`,
    `disk size: ${formatSize(info["actual-size"])}`,
    `cluster_size: ${info["cluster-size"]}`,
  ];
  if (info["backing-filename"] !== undefined) {
    lines.push(`backing file: ${info["backing-filename"]} (actual path: ${info["full-backing-filename"]})`);
    if (info["backing-filename-format"]) lines.push(`backing file format: ${info["backing-filename-format"]}`);
  }
  const specific = Object.entries(info["format-specific"]);
  if (specific.length > 0) {
    lines.push("Format specific information:");
    for (const [k, v] of specific) lines.push(`    ${k}: ${v}`);
  }
  // Backing names and format details come from the image: its bytes must not reach the terminal raw.
  return lines.map(printable).join("\n");
}
