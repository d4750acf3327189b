// The immutable registry of published layers (DESIGN 7): built whole from a configuration, installed with
// one assignment; each request reads `holder.current` once and keeps that snapshot to the end.

import { resolve } from 'node:path';
import { errorMessage, TuileError } from './errors.js';
import { getTms, type Bbox, type TileLimits, type TileMatrixSet } from './geo/tms.js';
import { PyramidChain } from './pyramid/chain.js';
import type { TileFormat } from './tiles/codec.js';

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
}

export interface Layer {
  name: string;
  title: string;
  abstract: string;
  keywords: string[];
  chain: PyramidChain;
  tms: TileMatrixSet;
  format: TileFormat;
  bands: number;
  nodata: number[];
  /** served levels, top first, with their tile limits (y from the top) */
  levels: TileLimits[];
  bboxLonLat: Bbox;
  featureInfo: boolean;
  open: boolean;
  available: boolean;
  offeringId?: string;
}

export const LAYER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

export class Registry {
  constructor(
    readonly layers: ReadonlyMap<string, Layer>,
    readonly generation: number,
  ) {}

  get(name: string): Layer | undefined {
    return this.layers.get(name);
  }

  /** Layers that show in capabilities and serve tiles. */
  visible(): Layer[] {
    return [...this.layers.values()].filter((l) => l.available).sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** Opens one layer's pyramid chain and checks it before it can be installed. */
export async function openLayer(spec: LayerSpec, reuse?: PyramidChain): Promise<Layer> {
  if (!LAYER_NAME.test(spec.name)) throw new TuileError('InvalidParameter', `invalid layer name '${spec.name}'`);
  const chain = reuse ?? (await PyramidChain.open(spec.dir));
  const d = chain.descriptor;
  const tms = getTms(d.tms);
  if (!tms) throw new TuileError('InvalidInput', `${spec.dir}: unknown tile matrix set ${d.tms}`);
  const top = spec.top ?? d.top;
  const bottom = spec.bottom ?? d.bottom;
  const levels = d.levels.map((l) => l.limits).filter((l) => l.z >= top && l.z <= bottom);
  if (levels.length === 0) throw new TuileError('InvalidInput', `${spec.dir}: no level between ${top} and ${bottom}`);
  return {
    name: spec.name,
    title: spec.title ?? spec.name,
    abstract: spec.abstract ?? '',
    keywords: spec.keywords ?? [],
    chain,
    tms,
    format: d.tileFormat,
    bands: d.bands,
    nodata: d.nodata,
    levels,
    bboxLonLat: d.bboxLonLat,
    featureInfo: spec.featureInfo ?? true,
    open: spec.open ?? true,
    available: spec.available ?? true,
    offeringId: spec.offeringId,
  };
}

/**
 * Holds the current registry. `install` swaps it in one assignment; chains no longer used are closed
 * after a grace period, so that requests that started on the old registry finish on it.
 */
export class RegistryHolder {
  current: Registry = new Registry(new Map(), 0);
  private readonly graceMs: number;

  constructor(opts: { graceMs?: number } = {}) {
    this.graceMs = opts.graceMs ?? 30_000;
  }

  /** Builds a registry from specs (reusing chains already open for the same folder) and installs it. */
  async load(specs: LayerSpec[]): Promise<Registry> {
    // chains by folder: those of the current registry, then those this load opens (a folder opens once)
    const open = new Map<string, PyramidChain>();
    for (const l of this.current.layers.values()) open.set(l.chain.dir, l.chain);
    const layers = new Map<string, Layer>();
    const opened: PyramidChain[] = [];
    try {
      for (const spec of specs) {
        if (layers.has(spec.name)) throw new TuileError('Conflict', `layer ${spec.name} declared twice`);
        const reuse = open.get(resolve(spec.dir));
        const layer = await openLayer(spec, reuse);
        if (!reuse) {
          opened.push(layer.chain);
          open.set(layer.chain.dir, layer.chain);
        }
        layers.set(spec.name, layer);
      }
    } catch (err) {
      await Promise.all(opened.map((c) => c.close()));
      throw err instanceof TuileError ? err : new TuileError('InvalidInput', errorMessage(err));
    }
    const next = new Registry(layers, this.current.generation + 1);
    const previous = this.current;
    this.current = next;
    const kept = new Set([...layers.values()].map((l) => l.chain));
    const retired = [...previous.layers.values()].map((l) => l.chain).filter((c) => !kept.has(c));
    if (retired.length > 0) {
      setTimeout(() => void Promise.all([...new Set(retired)].map((c) => c.close())), this.graceMs).unref();
    }
    return next;
  }
}
