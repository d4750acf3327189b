// The immutable registry of published layers (DESIGN 7): built whole from a configuration, installed with
// one assignment; each request reads `holder.current` once and keeps that snapshot to the end.

import { resolve } from 'node:path';
import { errorMessage, TuileError } from './errors.js';
import { clipToLimits, getTms, mercatorToLonLat, type Bbox, type TileLimits, type TileMatrixSet } from './geo/tms.js';
import { PyramidChain } from './pyramid/chain.js';
import type { TileFormat } from './tiles/codec.js';
import { LAYER_NAME, hashKey, pyramidFolder, servesPublished, type Attribution, type MetadataLink, type State } from './state/model.js';

export interface LayerSpec {
  name: string;
  dir: string; // pyramid folder
  title?: string;
  abstract?: string;
  keywords?: string[];
  featureInfo?: boolean;
  open?: boolean;
  available?: boolean;
  /** levels served (defaults: all the pyramid has) */
  top?: number;
  bottom?: number;
  offeringId?: string;
  /** keys that open a closed layer: sha256 of the key (hex), and the end of the permission (ISO date) */
  grants?: { hash: string; until?: string }[];
  metadata?: MetadataLink[];
  attribution?: Attribution;
  /** published on the private endpoint: served under /private only */
  private?: boolean;
  /** further pyramids, each serving its own level range (a configuration with several used_data) */
  more?: { dir: string; top: number; bottom: number }[];
}

export interface Layer {
  name: string;
  title: string;
  abstract: string;
  keywords: string[];
  /** the pyramid of the finest levels; `ranges` holds every pyramid with the levels it serves */
  chain: PyramidChain;
  ranges: { chain: PyramidChain; top: number; bottom: number }[];
  metadata: MetadataLink[];
  attribution?: Attribution;
  tms: TileMatrixSet;
  format: TileFormat;
  bands: number;
  nodata: number[];
  /** served levels, top first, with their tile limits (y from the top) */
  levels: TileLimits[];
  /** The extent every protocol advertises, in the set's CRS: the ranges' union, clipped to the served limits. */
  bbox: Bbox;
  bboxLonLat: Bbox;
  featureInfo: boolean;
  open: boolean;
  available: boolean;
  /** published on the private endpoint */
  private: boolean;
  offeringId?: string;
  /** key hash -> end of its permission in ms since the epoch (Infinity: no end) */
  grants: ReadonlyMap<string, number>;
}

export type Access = 'granted' | 'no-key' | 'denied';

/** The pyramid chain that serves level z of a layer. */
export function chainAt(layer: Layer, z: number): PyramidChain {
  for (const r of layer.ranges) if (z >= r.top && z <= r.bottom) return r.chain;
  return layer.chain;
}

/** Whether a request bearing `key` may use a layer: open layers need nothing, closed ones a granted key. */
export function access(layer: Layer, key: string | undefined, now = Date.now()): Access {
  if (layer.open) return 'granted';
  if (!key) return 'no-key';
  const until = layer.grants.get(hashKey(key));
  return until !== undefined && now < until ? 'granted' : 'denied';
}

function grantMap(grants: { hash: string; until?: string }[]): Map<string, number> {
  const m = new Map<string, number>();
  // a key granted by several permissions holds until the last one ends
  for (const g of grants) m.set(g.hash, Math.max(m.get(g.hash) ?? -Infinity, g.until ? Date.parse(g.until) : Infinity));
  return m;
}

export class Registry {
  constructor(
    readonly layers: ReadonlyMap<string, Layer>,
    readonly generation: number,
  ) {}

  get(name: string): Layer | undefined {
    return this.layers.get(name);
  }

  /** Layers that show in capabilities and serve tiles, to a request bearing `key` (or none). */
  visible(key?: string): Layer[] {
    const now = Date.now();
    return [...this.layers.values()].filter((l) => l.available && access(l, key, now) === 'granted').sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** Opens one layer's pyramid chains (through `open`, which may hand out chains already open) and checks them before it can be installed. */
async function openLayer(spec: LayerSpec, open: (dir: string) => Promise<PyramidChain> = (d) => PyramidChain.open(d)): Promise<Layer> {
  if (!LAYER_NAME.test(spec.name)) throw new TuileError('InvalidParameter', `invalid layer name '${spec.name}'`);
  const chain = await open(spec.dir);
  const d = chain.descriptor;
  const tms = getTms(d.tms);
  if (!tms) throw new TuileError('InvalidInput', `${spec.dir}: unknown tile matrix set ${d.tms}`);
  const ranges = [{ chain, top: spec.top ?? d.top, bottom: spec.bottom ?? d.bottom }];
  for (const m of spec.more ?? []) {
    const c = await open(m.dir);
    if (c.descriptor.tms !== d.tms || c.descriptor.tileFormat !== d.tileFormat) throw new TuileError('InvalidInput', `${m.dir}: not in the tile matrix set and format of ${spec.dir}`);
    ranges.push({ chain: c, top: m.top, bottom: m.bottom });
  }
  const levels = ranges
    .flatMap((r) => r.chain.descriptor.levels.map((l) => l.limits).filter((l) => l.z >= r.top && l.z <= r.bottom))
    .sort((a, b) => a.z - b.z);
  if (levels.length === 0) throw new TuileError('InvalidInput', `${spec.dir}: no level between ${ranges[0].top} and ${ranges[0].bottom}`);
  const boxes = ranges.map((r) => r.chain.descriptor);
  const union = (pick: (x: PyramidChain['descriptor']) => Bbox): Bbox => ({
    minX: Math.min(...boxes.map((x) => pick(x).minX)),
    minY: Math.min(...boxes.map((x) => pick(x).minY)),
    maxX: Math.max(...boxes.map((x) => pick(x).maxX)),
    maxY: Math.max(...boxes.map((x) => pick(x).maxY)),
  });
  const bbox = clipToLimits(tms, union((x) => x.bbox), levels);
  return {
    name: spec.name,
    title: spec.title ?? spec.name,
    abstract: spec.abstract ?? '',
    keywords: spec.keywords ?? [],
    chain,
    ranges,
    metadata: spec.metadata ?? [],
    attribution: spec.attribution,
    tms,
    format: d.tileFormat,
    bands: d.bands,
    nodata: d.nodata,
    levels,
    bbox,
    bboxLonLat: tms.crs === 'EPSG:3857' ? lonLatBox(bbox) : union((x) => x.bboxLonLat),
    featureInfo: spec.featureInfo ?? true,
    open: spec.open ?? true,
    available: spec.available ?? true,
    private: spec.private ?? false,
    offeringId: spec.offeringId,
    grants: grantMap(spec.grants ?? []),
  };
}

function lonLatBox(b: Bbox): Bbox {
  const [minX, minY] = mercatorToLonLat(b.minX, b.minY);
  const [maxX, maxY] = mercatorToLonLat(b.maxX, b.maxY);
  return { minX, minY, maxX, maxY };
}

/** What serving reads: the current registry, of every layer or of one endpoint's (see `endpointView`). */
export interface LayerSource {
  readonly current: Registry;
}

const views = new WeakMap<Registry, { open: Registry; private: Registry }>();

/**
 * One endpoint's side of a holder: the layers of the open endpoint, or those of the private one (served
 * under /private). Each registry's two views are made once, so that they are as immutable as it is.
 */
export function endpointView(source: LayerSource, priv: boolean): LayerSource {
  return {
    get current(): Registry {
      const reg = source.current;
      let v = views.get(reg);
      if (!v) {
        const pick = (p: boolean) => new Registry(new Map([...reg.layers].filter(([, l]) => l.private === p)), reg.generation);
        v = { open: pick(false), private: pick(true) };
        views.set(reg, v);
      }
      return priv ? v.private : v.open;
    },
  };
}

/**
 * Holds the current registry. `load` swaps it in one assignment. Chains no longer used, and chains opened
 * ahead of a switch (`prepare`), are kept open for a grace period: requests that started on the old
 * registry finish on it, and a switch to a chain kept there (or back to one) opens nothing.
 */
export class RegistryHolder {
  current: Registry = new Registry(new Map(), 0);
  private readonly graceMs: number;
  /** open chains not in the current registry, by folder, each closed when its timer fires */
  private readonly spare = new Map<string, { chain: Promise<PyramidChain>; timer: NodeJS.Timeout }>();

  constructor(opts: { graceMs?: number } = {}) {
    this.graceMs = opts.graceMs ?? 30_000;
  }

  private keep(dir: string, chain: Promise<PyramidChain>): void {
    const prev = this.spare.get(dir);
    if (prev) clearTimeout(prev.timer);
    const timer = setTimeout(() => {
      if (this.spare.get(dir)?.chain !== chain) return;
      this.spare.delete(dir);
      void chain.then((c) => c.close(), () => {});
    }, this.graceMs);
    timer.unref();
    this.spare.set(dir, { chain, timer });
  }

  /** Opens (and checks) a pyramid folder's chain ahead of a switch to it; throws when it cannot be served. */
  async prepare(dir: string): Promise<void> {
    const d = resolve(dir);
    for (const l of this.current.layers.values()) if (l.ranges.some((r) => r.chain.dir === d)) return;
    const kept = this.spare.get(d);
    if (kept) {
      this.keep(d, kept.chain); // restarts its grace period
      await kept.chain;
      return;
    }
    const chain = PyramidChain.open(d);
    this.keep(d, chain);
    try {
      await chain;
    } catch (err) {
      this.spare.delete(d);
      throw err;
    }
  }

  /**
   * Builds a registry from specs (reusing chains already open for the same folder) and installs it. By
   * default one layer that cannot be opened fails the whole load; with `skipBroken` it is left out.
   */
  async load(specs: LayerSpec[], opts: { skipBroken?: boolean } = {}): Promise<Registry> {
    // chains by folder: those of the current registry, then those this load opens (a folder opens once)
    const open = new Map<string, PyramidChain>();
    for (const l of this.current.layers.values()) for (const r of l.ranges) open.set(r.chain.dir, r.chain);
    const layers = new Map<string, Layer>();
    const opened: PyramidChain[] = [];
    const openDir = async (dir: string): Promise<PyramidChain> => {
      const d = resolve(dir);
      let c = open.get(d);
      if (!c && this.spare.has(d)) c = await this.spare.get(d)!.chain.catch(() => undefined);
      if (!c) {
        c = await PyramidChain.open(d);
        opened.push(c);
      }
      open.set(d, c);
      return c;
    };
    try {
      for (const spec of specs) {
        if (layers.has(spec.name)) throw new TuileError('Conflict', `layer ${spec.name} declared twice`);
        let layer: Layer;
        try {
          layer = await openLayer(spec, openDir);
        } catch (err) {
          if (!opts.skipBroken) throw err;
          // a layer that cannot switch keeps serving what it served; a new one is left out
          const served = this.current.get(spec.name);
          console.error(`tuile: layer ${spec.name} ${served ? 'not switched' : 'left out'}: ${errorMessage(err)}`);
          if (served) layers.set(spec.name, served);
          continue;
        }
        layers.set(spec.name, layer);
      }
    } catch (err) {
      const inUse = new Set([...this.current.layers.values()].flatMap((l) => l.ranges.map((r) => r.chain)));
      await Promise.all(opened.filter((c) => !inUse.has(c)).map((c) => c.close()));
      throw err instanceof TuileError ? err : new TuileError('InvalidInput', errorMessage(err));
    }
    const next = new Registry(layers, this.current.generation + 1);
    const previous = this.current;
    this.current = next;
    const kept = new Set([...layers.values()].flatMap((l) => l.ranges.map((r) => r.chain)));
    for (const c of kept) {
      const s = this.spare.get(c.dir);
      if (s) {
        clearTimeout(s.timer);
        this.spare.delete(c.dir);
      }
    }
    // chains no longer served, and chains opened for a layer that was then left out, close after the grace period
    for (const c of new Set([...previous.layers.values()].flatMap((l) => l.ranges.map((r) => r.chain)).concat(opened))) {
      if (!kept.has(c)) this.keep(c.dir, Promise.resolve(c));
    }
    return next;
  }
}

/**
 * The layers the state publishes: offerings PUBLISHED, or MODIFYING (they serve what they served until
 * the switch commits), each with the configuration copy it was published or synchronised with.
 */
export function specsFromState(state: Readonly<State>, pyramidDir: (folder: string) => string): LayerSpec[] {
  const dirOf = (id: string) => pyramidDir(pyramidFolder(state.stored_data[id]));
  return Object.values(state.offerings)
    .filter((o) => servesPublished(o) && [o.published.stored_data, ...(o.published.more ?? []).map((m) => m.stored_data)].every((id) => state.stored_data[id]))
    .sort((a, b) => a.layer_name.localeCompare(b.layer_name))
    .map((o) => ({
      name: o.layer_name,
      dir: dirOf(o.published.stored_data),
      title: o.published.title,
      abstract: o.published.abstract,
      keywords: o.published.keywords,
      featureInfo: o.published.feature_info,
      open: o.open,
      available: o.available,
      top: o.published.top_level,
      bottom: o.published.bottom_level,
      offeringId: o._id,
      grants: o.open ? undefined : grantsOf(state, o._id),
      ...(state.endpoints[o.endpoint]?.open === false ? { private: true } : {}),
      ...(o.published.metadata?.length ? { metadata: o.published.metadata } : {}),
      ...(o.published.attribution ? { attribution: o.published.attribution } : {}),
      ...(o.published.more?.length ? { more: o.published.more.map((m) => ({ dir: dirOf(m.stored_data), top: m.top_level, bottom: m.bottom_level })) } : {}),
    }));
}

/** The keys whose accesses cover an offering through a permission that grants it to the key's user. */
function grantsOf(state: Readonly<State>, offering: string): { hash: string; until?: string }[] {
  const out: { hash: string; until?: string }[] = [];
  for (const k of Object.values(state.keys)) {
    for (const a of k.accesses) {
      const p = state.permissions[a.permission];
      if (!p || p.only_oauth || p.beneficiary !== k.user || !p.offerings.includes(offering) || !a.offerings.includes(offering)) continue;
      out.push({ hash: k.hash, until: p.end_date });
    }
  }
  return out.sort((a, b) => a.hash.localeCompare(b.hash));
}
