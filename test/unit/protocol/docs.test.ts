import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stateJsonSchema } from '../../../runtime/protocol/index.js';

t.test('docs/protocol.md embeds the current generated state JSON Schema', async (t) => {
  const doc = await readFile(join(import.meta.dirname, '../../../docs/protocol.md'), 'utf8');
  const block = /<!-- generated:state-json-schema -->\n```json\n([\s\S]*?)\n```\n<!-- \/generated:state-json-schema -->/.exec(doc);
  t.ok(block, 'the generated block is present');
  t.same(JSON.parse(block?.[1] ?? 'null'), stateJsonSchema(), 'regenerate it with stateJsonSchema() after changing the schema');
});
