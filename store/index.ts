export { openStore, Store, type VersionInfo, type LineInfo, type StoreStats, type IntegrityReport } from './store.js';
export { WriteTransaction, contentHash, type CommitResult } from './transaction.js';
export { resolveStoreOptions, DURABILITY_MODES, type StoreOptions, type AppOptions, type Durability } from './options.js';
export { fsBlockIo, type BlockIo } from './block-io.js';
export { HASH_BYTES, encodeMap, decodeMap, type LineRecord } from './map-codec.js';
export type { WearStats } from './segment-space.js';
