// Prometheus metrics of one process (requests by route and status, tile latency histogram, cache
// figures) as a mergeable snapshot, so that the primary process can sum its workers'.
//
// Hand counters rather than prom-client (whose AggregatorRegistry would sum the workers): on the hot tile
// its labelled Counter.inc and Histogram.observe cost more than the 3 % the fast path can spare. Measured
// 2026-12-03 on prom-client 15.1.3, the request and tile counters swapped for prom-client's, everything
// else equal: +3.7 us per request in a loop of the three calls (2.4 -> 6.1 us, best of 7), against 41-51
// us of server CPU per request on the hot tile (wrk -t2 -c64, 2 workers, 4 alternating runs of 8 s:
// 41-51 us hand, 49-58 us prom-client, +8 to +20 %; req/s too noisy on the shared machine to quote).

import type { CacheStats } from './cache.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface MetricsSnapshot {
  requests: Record<string, number>; // "route status" -> count
  /** answered requests of a layer: "day\tprotocol\tlayer" -> count, day as YYYY-MM-DD (UTC) */
  layers?: Record<string, number>;
  tileLatency: { buckets: number[]; count: number; sum: number };
  cache: CacheStats;
}

/** The protocol of a route pattern, as the offerings' urls name it. */
function protocolOfRoute(route: string): string | undefined {
  const r = route.startsWith('/private/') ? route.slice(8) : route;
  if (r.startsWith('/tiles/')) return 'XYZ';
  if (r.startsWith('/tms/')) return 'TMS';
  if (r.startsWith('/wmts')) return 'WMTS';
  if (r.startsWith('/ogcapi/')) return 'OGCAPI-TILES';
  if (r.startsWith('/viewer/')) return 'VIEWER';
  return undefined;
}

/** Days of per-layer counts kept in memory. */
const LAYER_DAYS = 31;
const DAY_MS = 86_400_000;

/** One counter of a snapshot, held by reference so that a hot caller increments it without a lookup. */
export interface Count {
  n: number;
}

/** A layer's per-day count for one protocol, kept by a caller that counts it often (the fast path). */
export interface LayerCount {
  readonly name: string;
  readonly protocol: string;
  day: number;
  count?: Count;
}

export class Metrics {
  private readonly requests = new Map<string, Count>();
  private readonly layers = new Map<string, Count>();
  private day = -1;
  private dayText = '';
  private readonly buckets = new Array(LATENCY_BUCKETS.length).fill(0);
  private count = 0;
  private sum = 0;

  constructor(private readonly cacheStats: () => CacheStats) {}

  request(route: string, status: number): void {
    this.requestCount(route, status).n++;
  }

  /** The counter of a route and status, to be incremented by the caller (`request` does it once). */
  requestCount(route: string, status: number): Count {
    const k = `${route} ${status}`;
    let c = this.requests.get(k);
    if (!c) this.requests.set(k, (c = { n: 0 }));
    return c;
  }

  /** A request of a layer answered (2xx or 304), by day and protocol. */
  layer(name: string, route: string): void {
    const protocol = protocolOfRoute(route);
    if (protocol) this.layerCell(name, protocol).n++;
  }

  /** What `countLayer` counts: a layer's requests through a route's protocol; undefined when the route has none. */
  layerCount(name: string, route: string): LayerCount | undefined {
    const protocol = protocolOfRoute(route);
    return protocol ? { name, protocol, day: -1 } : undefined;
  }

  /** `layer(name, route)` for a kept LayerCount: its counter is looked up again only when the day changes. */
  countLayer(h: LayerCount): void {
    const day = Math.floor(Date.now() / DAY_MS);
    if (day !== h.day || day !== this.day) {
      h.count = this.layerCell(h.name, h.protocol);
      h.day = day;
    }
    h.count!.n++;
  }

  private layerCell(name: string, protocol: string): Count {
    const day = Math.floor(Date.now() / DAY_MS);
    if (day !== this.day) {
      this.day = day;
      this.dayText = new Date(day * DAY_MS).toISOString().slice(0, 10);
      const oldest = new Date((day - LAYER_DAYS + 1) * DAY_MS).toISOString().slice(0, 10);
      for (const k of this.layers.keys()) if (k.slice(0, 10) < oldest) this.layers.delete(k);
    }
    const k = `${this.dayText}\t${protocol}\t${name}`;
    let c = this.layers.get(k);
    if (!c) this.layers.set(k, (c = { n: 0 }));
    return c;
  }

  tile(seconds: number): void {
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) this.buckets[i]++;
  }

  snapshot(): MetricsSnapshot {
    return {
      requests: counts(this.requests),
      layers: counts(this.layers),
      tileLatency: { buckets: [...this.buckets], count: this.count, sum: this.sum },
      cache: this.cacheStats(),
    };
  }
}

function counts(m: Map<string, Count>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, c] of m) out[k] = c.n;
  return out;
}

export function mergeSnapshots(list: MetricsSnapshot[]): MetricsSnapshot {
  const out: MetricsSnapshot = {
    requests: {},
    layers: {},
    tileLatency: { buckets: new Array(LATENCY_BUCKETS.length).fill(0), count: 0, sum: 0 },
    cache: { hits: 0, misses: 0, loads: 0, bytes: 0, entries: 0, maxBytes: 0 },
  };
  for (const s of list) {
    for (const [k, v] of Object.entries(s.requests)) out.requests[k] = (out.requests[k] ?? 0) + v;
    for (const [k, v] of Object.entries(s.layers ?? {})) out.layers![k] = (out.layers![k] ?? 0) + v;
    s.tileLatency.buckets.forEach((v, i) => (out.tileLatency.buckets[i] += v));
    out.tileLatency.count += s.tileLatency.count;
    out.tileLatency.sum += s.tileLatency.sum;
    for (const k of Object.keys(out.cache) as (keyof CacheStats)[]) out.cache[k] += s.cache[k];
  }
  return out;
}

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderPrometheus(s: MetricsSnapshot, processes: number): string {
  const lines: string[] = [];
  lines.push('# HELP tuile_http_requests_total HTTP requests by route and status.', '# TYPE tuile_http_requests_total counter');
  for (const [k, v] of Object.entries(s.requests).sort()) {
    const i = k.lastIndexOf(' ');
    lines.push(`tuile_http_requests_total{route="${label(k.slice(0, i))}",status="${k.slice(i + 1)}"} ${v}`);
  }
  lines.push('# HELP tuile_tile_seconds Time to answer a tile request.', '# TYPE tuile_tile_seconds histogram');
  LATENCY_BUCKETS.forEach((b, i) => lines.push(`tuile_tile_seconds_bucket{le="${b}"} ${s.tileLatency.buckets[i]}`));
  lines.push(`tuile_tile_seconds_bucket{le="+Inf"} ${s.tileLatency.count}`);
  lines.push(`tuile_tile_seconds_sum ${s.tileLatency.sum}`, `tuile_tile_seconds_count ${s.tileLatency.count}`);
  const c = s.cache;
  lines.push('# HELP tuile_cache_hits_total Tile cache hits.', '# TYPE tuile_cache_hits_total counter', `tuile_cache_hits_total ${c.hits}`);
  lines.push('# HELP tuile_cache_misses_total Tile cache misses.', '# TYPE tuile_cache_misses_total counter', `tuile_cache_misses_total ${c.misses}`);
  lines.push('# HELP tuile_cache_loads_total Archive reads made for cache misses.', '# TYPE tuile_cache_loads_total counter', `tuile_cache_loads_total ${c.loads}`);
  lines.push('# HELP tuile_cache_bytes Bytes held by the tile caches.', '# TYPE tuile_cache_bytes gauge', `tuile_cache_bytes ${c.bytes}`);
  lines.push('# HELP tuile_cache_entries Tiles held by the tile caches.', '# TYPE tuile_cache_entries gauge', `tuile_cache_entries ${c.entries}`);
  lines.push('# HELP tuile_cache_max_bytes Budget of the tile caches.', '# TYPE tuile_cache_max_bytes gauge', `tuile_cache_max_bytes ${c.maxBytes}`);
  lines.push('# HELP tuile_processes Serving processes summed here.', '# TYPE tuile_processes gauge', `tuile_processes ${processes}`);
  return lines.join('\n') + '\n';
}
