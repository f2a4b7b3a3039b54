/**
 * `npm run test:system` step 1, in the host's network namespace (mmdebstrap needs the Debian
 * archive): builds or finds the cached image. The tests themselves then run inside
 * `unshare --net`, where nothing but loopback exists.
 */
import { ensureImage } from './lib/image.js';

const t0 = performance.now();
const image = await ensureImage((line) => console.log(`system: ${line}`));
console.log(`system: image ${image.dir} ready in ${Math.round(performance.now() - t0)} ms`);
