import { readFileSync } from 'node:fs';
import t from 'tap';
import { errorCodes } from '../../runtime/errors.js';

t.test('docs/architecture.md lists every error code with the exit status and transience the code has', async (t) => {
  const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
  const documented = new Map<string, { exits: number[]; transient: string }>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length !== 6 || !/^`[A-Z_]+`/.test(cells[1] ?? '')) continue;
    const codes = [...(cells[1] ?? '').matchAll(/`([A-Z_]+)`/g)].map((m) => m[1] ?? '');
    const exits = (cells[2] ?? '').split(',').map((e) => Number(e.trim()));
    const transients = (cells[3] ?? '').split(',').map((e) => e.trim());
    codes.forEach((code, i) => documented.set(code, { exits: [exits[Math.min(i, exits.length - 1)] ?? NaN], transient: transients[Math.min(i, transients.length - 1)] ?? '' }));
  }
  for (const [code, { exit, transient }] of Object.entries(errorCodes)) {
    const row = documented.get(code);
    t.ok(row, `${code} is documented`);
    if (!row) continue;
    t.same(row.exits, [exit], `${code}: exit ${exit}`);
    t.match(row.transient, transient ? /^yes/ : /^no/, `${code}: ${transient ? '' : 'not '}transient`);
  }
});
