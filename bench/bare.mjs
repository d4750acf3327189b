// The runtime's ceiling for bench:serve: a bare node:http server in N cluster workers answering every GET
// with one fixed buffer (the hot tile's bytes) and the headers tuile sends with a tile. Nothing is parsed,
// looked up or cached: what tuile does per tile beyond this is its own cost.
//   node bench/bare.mjs TILE_FILE PORT [WORKERS=2]
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [file, port, workers = '2'] = process.argv.slice(2);
if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  // a normal exit, so that node --cpu-prof writes the worker's profile
  process.on('SIGTERM', () => process.exit(0));
  const body = readFileSync(file);
  const headers = {
    'Content-Type': 'image/png',
    ETag: '"bare-0-0-0"',
    'Cache-Control': 'public, max-age=3600',
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Expose-Headers': 'ETag, Content-Length, Content-Range',
    'Content-Length': body.length,
  };
  createServer((req, res) => {
    res.writeHead(200, headers);
    res.end(body);
  }).listen(Number(port), '127.0.0.1');
}
