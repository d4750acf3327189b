// Stopping an HTTP server without a reset connection: no new connections, every request answered (with
// `Connection: close` from the stop on), and keep-alive sockets left to close on their idle timeout.
//
// Why not http's close(): since Node 19 it also destroys idle keep-alive sockets at once, and a client may
// have just sent its next request on one of them; that request then meets a closed socket and the client
// an ECONNRESET. A socket left to its keep-alive timeout is one the client already knows to be expiring
// (the server announces `Keep-Alive: timeout=5`, and clients stop reusing a socket before then).
//
// The server gets one request listener, the application's wrapped: an emit with several listeners copies
// its list on every request, and the bare node:http server this one is measured against has one. Only the
// responses still without headers when the handler returns are remembered (the drain must make them close
// their socket): a cached tile is answered before that, so its request costs no listener and no closure.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer } from 'node:net';

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

interface Tracked {
  closing: boolean;
  /** answers not begun when their handler returned: they learn of a drain before writing their headers */
  pending: Set<ServerResponse>;
  done?: Promise<void>;
}

const tracked = new WeakMap<Server, Tracked>();

export interface GracefulOptions {
  /** the server answers a proxy on the same machine: no Connection header in its answers */
  internal?: boolean;
}

/** Makes `handler` the server's request listener, followed so that `drain` can close the server gracefully. */
export function graceful(server: Server, handler: RequestListener, opts: GracefulOptions = {}): void {
  if (tracked.has(server)) throw new Error('graceful: the server already has its request listener');
  const t: Tracked = { closing: false, pending: new Set() };
  tracked.set(server, t);
  const internal = opts.internal === true;
  const { pending } = t;
  // one function for every response, not a closure each
  function forget(this: ServerResponse): void {
    pending.delete(this);
  }
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // an internal hop's answers are copied by a proxy: its own Connection header must not travel
    if (internal) res.removeHeader('connection');
    // set before the handler writes its headers, which then say close
    if (t.closing) res.shouldKeepAlive = false;
    handler(req, res);
    if (!res.headersSent) {
      pending.add(res);
      res.once('close', forget);
    }
  });
}

/** Stops listening and resolves once every connection has ended, or after `maxMs` (the rest are cut). */
export function drain(server: Server, maxMs: number): Promise<void> {
  let t = tracked.get(server);
  if (!t) {
    t = { closing: false, pending: new Set() };
    tracked.set(server, t);
  }
  const state = t;
  state.done ??= new Promise<void>((resolve) => {
    state.closing = true;
    // in flight: answered whole, then their socket closes (headers already sent keep their socket to
    // its idle timeout, like any other)
    for (const res of state.pending) if (!res.headersSent) res.shouldKeepAlive = false;
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
  return state.done;
}
