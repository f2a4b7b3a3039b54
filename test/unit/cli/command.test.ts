import t from 'tap';
import { OutpostError } from '../../../runtime/errors.js';
import { runProgram, withVersion, type Program } from '../../../runtime/cli/command.js';

const program: Program = {
  name: 'tool',
  summary: 'a test tool',
  commands: [
    { name: 'update status', summary: 'show the update', options: { json: { type: 'boolean', description: 'JSON' } }, run: async ({ values, out }) => (out(values.json ? '{}' : 'idle'), 0) },
    { name: 'update apply', summary: 'apply an update', options: { json: { type: 'boolean', description: 'JSON' } }, run: async () => {
      throw new OutpostError('API_UNAVAILABLE', 'cannot reach the daemon at /run/outpost/api.sock');
    } },
    { name: 'status', summary: 'show status', run: async ({ out }) => (out('ok'), 0) },
  ],
};

async function run(argv: string[], which: Program = program) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runProgram(which, argv, { env: {}, out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

t.test('a command group alone lists its subcommands', async (t) => {
  const r = await run(['update']);
  t.equal(r.code, 0);
  t.match(r.out, /^Usage: tool update <command> \[options\]/);
  t.match(r.out, /update status +show the update\n +update apply +apply an update/);
  t.notMatch(r.out, /^ +status/m, 'only the group');
  t.same(await run(['update', '--help']), r, '--help on the group says the same');
  const unknown = await run(['update', 'frobnicate']);
  t.equal(unknown.code, 64, 'an unknown subcommand is still a usage error');
  t.match(unknown.err, /unknown command 'update frobnicate'[\s\S]*update apply/);
});

t.test('--json: a failure is a JSON error object on stdout too, with the same exit code', async (t) => {
  const r = await run(['update', 'apply', '--json']);
  t.equal(r.code, 69);
  t.same(JSON.parse(r.out), { error: { code: 'API_UNAVAILABLE', message: 'cannot reach the daemon at /run/outpost/api.sock', exitCode: 69 } });
  t.match(r.err, /cannot reach the daemon/, 'people still read it on stderr');
  const plain = await run(['update', 'apply']);
  t.equal(plain.out, '', 'without --json nothing on stdout');
});

t.test('--version is the version command', async (t) => {
  const versioned = withVersion(program, '1.2.3');
  t.same(await run(['--version'], versioned), { code: 0, out: '1.2.3', err: '' });
  t.same(await run(['version'], versioned), { code: 0, out: '1.2.3', err: '' });
});
