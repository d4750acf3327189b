// Stopping an HTTP server without a reset connection: no new connections, every request answered (with
// `Connection: close` from the stop on), and keep-alive sockets left to close on their idle timeout.
//
// Why not http's close(): since Node 19 it also destroys idle keep-alive sockets at once, and a client may
// have just sent its next request on one of them; that request then meets a closed socket and the client
// an ECONNRESET. A socket left to its keep-alive timeout is one the client already knows to be expiring
// (the server announces `Keep-Alive: timeout=5`, and clients stop reusing a socket before then).

import type { ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';
import type { Server } from 'node:http';

export interface Drainable {
  /** Stops listening and resolves once every connection has ended, or after `maxMs` (the rest are cut). */
  drain(maxMs: number): Promise<void>;
}

export function drainable(server: Server): Drainable {
  let closing = false;
  const active = new Set<ServerResponse>();
  // first of the request listeners: the application's handler then writes headers that already say close
  server.prependListener('request', (_req, res: ServerResponse) => {
    if (closing) res.shouldKeepAlive = false;
    active.add(res);
    res.once('close', () => active.delete(res));
  });
  let done: Promise<void> | null = null;
  return {
    drain(maxMs) {
      done ??= new Promise<void>((resolve) => {
        closing = true;
        // in flight: answered whole, then their socket closes (headers already sent keep their socket
        // to its idle timeout, like any other)
        for (const res of active) if (!res.headersSent) res.shouldKeepAlive = false;
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
      return done;
    },
  };
}
