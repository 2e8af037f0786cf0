// Virtio devices over PCI: the public surface the VMM imports.

export { FlatGuestRam, type GuestRam } from "./guest-ram.js";
export { MAX_QUEUE_SIZE, Virtqueue, VirtqueueError, type DescriptorChain } from "./virtqueue.js";
export { VirtioDeviceId, VirtioFeature, VirtioIsr, VirtioStatus, featureWords, hasFeature, type FeatureWords, type VirtioDeviceModel } from "./virtio.js";
export { LEGACY_BAR, MODERN_BAR, VIRTIO_PCI_VENDOR, VirtioPciDevice, type VirtioPciOptions } from "./pci-transport.js";
export { MAX_BOUNCE_BYTES, SECTOR_BYTES, VIRTIO_BLK_ID_BYTES, VirtioBlk, VirtioBlkFeature, VirtioBlkStatus, VirtioBlkType, type BlockBackend, type VirtioBlkOptions } from "./blk.js";
export { BALLOON_STAT_NAMES, BalloonFeature, BalloonQueue, VirtioBalloon, type BalloonHost } from "./balloon.js";
export { memoryBlockBackend, serviceBlockBackend, type SectorService } from "./backends.js";
export { BlockAttachError, ipcBlockBackend, type IpcBlockBackend } from "./ipc-backend.js";
export { installVirtioPci, programVirtioPci, type VirtioPlacement } from "./install.js";
