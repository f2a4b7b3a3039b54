import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { commandEnvelopeJsonSchema, commandProgressJsonSchema, commandResultJsonSchema, stateJsonSchema } from '../../../runtime/protocol/index.js';

const generated: Array<[marker: string, schema: () => Record<string, unknown>, name: string]> = [
  ['state-json-schema', stateJsonSchema, 'stateJsonSchema()'],
  ['command-envelope-json-schema', commandEnvelopeJsonSchema, 'commandEnvelopeJsonSchema()'],
  ['command-result-json-schema', commandResultJsonSchema, 'commandResultJsonSchema()'],
  ['command-progress-json-schema', commandProgressJsonSchema, 'commandProgressJsonSchema()'],
];

t.test('docs/protocol.md embeds the current generated JSON Schemas', async (t) => {
  const doc = await readFile(join(import.meta.dirname, '../../../docs/protocol.md'), 'utf8');
  for (const [marker, schema, name] of generated) {
    const block = new RegExp(`<!-- generated:${marker} -->\\n\`\`\`json\\n([\\s\\S]*?)\\n\`\`\`\\n<!-- /generated:${marker} -->`).exec(doc);
    t.ok(block, `the ${marker} block is present`);
    t.same(JSON.parse(block?.[1] ?? 'null'), schema(), `regenerate it with ${name} after changing the schema`);
  }
});
