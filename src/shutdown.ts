// Stopping an HTTP server without a reset connection: no new connections, every request answered (with
// `Connection: close` from the stop on), and keep-alive sockets left to close on their idle timeout.
//
// Why not http's close(): since Node 19 it also destroys idle keep-alive sockets at once, and a client may
// have just sent its next request on one of them; that request then meets a closed socket and the client
// an ECONNRESET. A socket left to its keep-alive timeout is one the client already knows to be expiring
// (the server announces `Keep-Alive: timeout=5`, and clients stop reusing a socket before then).

import type { Server, ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';

interface Tracked {
  closing: boolean;
  internal: boolean;
  active: Set<ServerResponse>;
  done?: Promise<void>;
}

const tracked = new WeakMap<Server, Tracked>();

/** Follows a server's requests so that `drain` can close it gracefully; call before it listens. */
export function graceful(server: Server): void {
  if (tracked.has(server)) return;
  const t: Tracked = { closing: false, internal: false, active: new Set() };
  tracked.set(server, t);
  // first of the request listeners: the application's handler then writes headers that already say close
  server.prependListener('request', (_req, res: ServerResponse) => {
    // an internal hop's answers are copied by a proxy: its own Connection header must not travel
    if (t.internal) res.removeHeader('connection');
    if (t.closing) res.shouldKeepAlive = false;
    t.active.add(res);
    res.once('close', () => t.active.delete(res));
  });
}

/** The server answers a proxy on the same machine: no Connection header in its answers. */
export function internalHop(server: Server): void {
  graceful(server);
  tracked.get(server)!.internal = true;
}

/** Stops listening and resolves once every connection has ended, or after `maxMs` (the rest are cut). */
export function drain(server: Server, maxMs: number): Promise<void> {
  graceful(server);
  const t = tracked.get(server)!;
  t.done ??= new Promise<void>((resolve) => {
    t.closing = true;
    // in flight: answered whole, then their socket closes (headers already sent keep their socket to
    // its idle timeout, like any other)
    for (const res of t.active) if (!res.headersSent) res.shouldKeepAlive = false;
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, maxMs);
    timer.unref();
    NetServer.prototype.close.call(server, () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return t.done;
}
