import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFileServer } from '../../../scripts/world/file-server.js';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

t.test('the world file server answers byte ranges like a CDN and stays inside its root', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'outpost-fs-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, 'f'), '0123456789');
  const server = await startFileServer({ root });
  t.teardown(() => server.close());
  const u = `${server.url}/f`;
  t.match(await get(u), { status: 200, body: '0123456789', headers: { 'content-length': '10', 'accept-ranges': 'bytes' } });
  t.match(await get(u, { range: 'bytes=3-' }), { status: 206, body: '3456789', headers: { 'content-range': 'bytes 3-9/10' } });
  t.match(await get(u, { range: 'bytes=2-4' }), { status: 206, body: '234' });
  t.match(await get(u, { range: 'bytes=-3' }), { status: 206, body: '789' });
  t.match(await get(u, { range: 'bytes=10-' }), { status: 416, headers: { 'content-range': 'bytes */10' } });
  t.match(await get(u, { range: 'bytes=0-1,4-5' }), { status: 200, body: '0123456789' }, 'multi-range: whole file');
  t.equal((await get(`${server.url}/../../etc/passwd`)).status, 404, 'URL normalisation keeps `..` inside');
  t.equal((await get(`${server.url}/..%2F..%2F..%2Fetc%2Fpasswd`)).status, 403, 'encoded escape refused');
  server.setFault({ ignoreRange: true, times: 1 });
  t.match(await get(u, { range: 'bytes=3-' }), { status: 200, body: '0123456789' });
  t.match(await get(u, { range: 'bytes=3-' }), { status: 206 }, 'fault cleared after `times`');
  t.same(server.requests.map((r) => r.status), [200, 206, 206, 206, 416, 200, 404, 403, 200, 206]);
});
