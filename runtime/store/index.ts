/** State store: typed collections over classic-level, fsync'd atomic batches, versioned format. */
export { Store, setAsideStore, type Collection, type WriteBatch, type Migration, type OpenEvent, type OpenStoreOptions } from './store.js';
