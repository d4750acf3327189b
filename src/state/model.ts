// The management model (DESIGN 2): entities and statuses shaped like the Géoplateforme Entrepôt API.
// Everything here is plain JSON: the state is one object, persisted whole by the store.

import { createHash } from 'node:crypto';
import { TILE_FORMATS } from '../formats.js';

export const UPLOAD_STATUSES = ['OPEN', 'CLOSED', 'CHECKING', 'UNSTABLE', 'DELETED'] as const;
export const EXECUTION_STATUSES = ['CREATED', 'WAITING', 'PROGRESS', 'SUCCESS', 'FAILURE', 'ABORTED'] as const;
export const STORED_DATA_STATUSES = ['CREATED', 'GENERATING', 'MODIFYING', 'GENERATED', 'UNSTABLE', 'DELETED'] as const;
export const CONFIGURATION_STATUSES = ['UNPUBLISHED', 'PUBLISHED', 'SYNCHRONIZING'] as const;
export const OFFERING_STATUSES = ['PUBLISHING', 'MODIFYING', 'PUBLISHED', 'UNPUBLISHING', 'UNSTABLE'] as const;

export type UploadStatus = (typeof UPLOAD_STATUSES)[number];
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];
export type StoredDataStatus = (typeof STORED_DATA_STATUSES)[number];
export type ConfigurationStatus = (typeof CONFIGURATION_STATUSES)[number];
export type OfferingStatus = (typeof OFFERING_STATUSES)[number];

/** A layer name: what WMTS, TMS and URL paths can carry without escaping. */
export const LAYER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

export const PYRAMID_TYPE = 'ROK4-PYRAMID-RASTER';
export const SERVICE_TYPE = 'WMTS-TMS';

export interface Event {
  title: string;
  date: string;
  /** who caused it: a user id, or the server itself for what it does on its own (checks, builds, recovery) */
  initiator?: { _id: string; last_name?: string; first_name?: string };
}

/** The initiator of what the server does on its own (checks, builds, publication, recovery). */
export const SERVER = { _id: 'tuile', last_name: 'tuile' } as const;

/** What every entity carries. */
export interface Entity {
  _id: string;
  creation: string;
  update: string;
  tags: Record<string, string>;
  last_event?: Event;
}

export interface Datastore extends Entity {
  name: string;
  technical_name: string;
  active: boolean;
  endpoints: string[];
}

export interface Endpoint extends Entity {
  name: string;
  technical_name: string;
  type: typeof SERVICE_TYPE;
  open: boolean;
}

export interface CheckRun {
  _id: string;
  check: { _id: string; name: string };
  status: 'WAITING' | 'PROGRESS' | 'SUCCESS' | 'FAILURE';
  start?: string;
  finish?: string;
  logs: string[];
}

export interface Upload extends Entity {
  datastore: string;
  name: string;
  description: string;
  type: 'RASTER';
  srs: string;
  status: UploadStatus;
  /** who to write to about it (TUILE_CONTACT), as the platform gives its community's address */
  contact?: string;
  /** bytes of the files pushed */
  size: number;
  checks: CheckRun[];
  /** from the checks: extent in EPSG:3857 and the PM level nearest the finest resolution */
  footprint?: { minX: number; minY: number; maxX: number; maxY: number; level: number };
}

export interface Execution extends Entity {
  datastore: string;
  processing: string;
  status: ExecutionStatus;
  inputs: { upload: string[]; stored_data: string[] };
  output: { stored_data: string };
  /** the execution updates its output in place (an injection) instead of making it */
  inject?: boolean;
  /** the pyramid folder it builds, once running */
  folder?: string;
  /** parameters as given, and as used (inherited from the parent when left out) once it runs */
  parameters: Record<string, unknown>;
  launch?: string;
  start?: string;
  finish?: string;
  progress?: number;
  logs: string[];
}

export interface PyramidTypeInfos {
  tms: string;
  levels: string[];
  channels_format: 'UINT8';
  channels_number: number;
  compression: string;
  nodata_value: string;
  interpolation?: string;
}

export interface StoredData extends Entity {
  datastore: string;
  name: string;
  type: typeof PYRAMID_TYPE;
  status: StoredDataStatus;
  srs: 'EPSG:3857';
  contact?: string;
  storage: { type: 'FILESYSTEM'; labels: string[] };
  /** the stored data it is chained on (its pyramid reads through the parent's) */
  parent?: string;
  /**
   * its pyramid folder under pyramids/: its id, until an injection chains a new generation on it
   * (`<id>.<n>`); earlier generations stay, as the chain the new one reads through
   */
  folder?: string;
  size?: number;
  extent?: { type: 'Polygon'; coordinates: number[][][] };
  type_infos?: PyramidTypeInfos;
}

export interface UsedData {
  stored_data: string;
  bottom_level: string;
  top_level: string;
}

/** A link to a metadata record, written into the capabilities as ows:Metadata (WMTS) and Metadata (TMS). */
export interface MetadataLink {
  format: string;
  url: string;
  type: string;
}

export interface Attribution {
  title: string;
  url: string;
  logo?: { format: string; url: string; width?: number; height?: number };
}

export interface Configuration extends Entity {
  datastore: string;
  type: typeof SERVICE_TYPE;
  name: string;
  layer_name: string;
  status: ConfigurationStatus;
  type_infos: {
    title: string;
    abstract: string;
    keywords: string[];
    used_data: UsedData[];
    bbox?: { west: number; south: number; east: number; north: number };
  };
  getfeatureinfo?: { stored_data: boolean };
  metadata?: MetadataLink[];
  attribution?: Attribution;
}

/** What an offering serves: the configuration as it was at its publication or its last synchronisation. */
export interface Published {
  stored_data: string;
  bottom_level: number;
  top_level: number;
  title: string;
  abstract: string;
  keywords: string[];
  feature_info: boolean;
  metadata?: MetadataLink[];
  attribution?: Attribution;
  /** further used_data, each serving its own level range (the first entry is the fields above) */
  more?: { stored_data: string; bottom_level: number; top_level: number }[];
}

export interface Offering extends Entity {
  datastore: string;
  type: typeof SERVICE_TYPE;
  layer_name: string;
  open: boolean;
  available: boolean;
  status: OfferingStatus;
  configuration: string;
  endpoint: string;
  published: Published;
  /** what a synchronisation is switching to, while MODIFYING */
  pending?: Published;
  /** its first publication failed: it serves nothing until a synchronisation succeeds */
  unserved?: boolean;
}

export interface Permission extends Entity {
  datastore: string;
  licence: string;
  end_date?: string;
  /** usable only with the beneficiary's own OAuth login, which tuile does not offer: no key opens it */
  only_oauth: boolean;
  /** the user the permission is granted to */
  beneficiary: string;
  offerings: string[];
}

export interface ApiKey extends Entity {
  user: string;
  name: string;
  type: 'HASH';
  /** sha256 of the key, hex; the key itself is shown once, at creation */
  hash: string;
  /** a short prefix of the key, to tell keys apart in lists */
  prefix: string;
  /** the offerings this key opens, each through a permission granted to its user */
  accesses: { permission: string; offerings: string[] }[];
}

export interface State {
  version: 1;
  admin_user: string;
  datastores: Record<string, Datastore>;
  endpoints: Record<string, Endpoint>;
  uploads: Record<string, Upload>;
  executions: Record<string, Execution>;
  stored_data: Record<string, StoredData>;
  configurations: Record<string, Configuration>;
  offerings: Record<string, Offering>;
  permissions: Record<string, Permission>;
  keys: Record<string, ApiKey>;
}

export function emptyState(adminUser: string): State {
  return {
    version: 1,
    admin_user: adminUser,
    datastores: {},
    endpoints: {},
    uploads: {},
    executions: {},
    stored_data: {},
    configurations: {},
    offerings: {},
    permissions: {},
    keys: {},
  };
}

/** The check every raster upload goes through, which the processings require. */
export const RASTER_CHECK = { _id: 'b7d3c1e2-4f5a-4c6b-9d8e-0a1b2c3d4e5f', name: 'Contrôle des rasters (GeoTIFF, géoréférencement, SRS, taille)' };

/** The pyramid processing, described as the Entrepôt describes its processings. */
export const RASTER_TO_PYRAMID = {
  _id: '7c2f7a0e-9a55-4e4e-8d5e-3c0f1b2a4d01',
  name: 'Calcul de pyramide raster',
  technical_name: 'raster-to-pyramid',
  description: 'Computes a raster tile pyramid in the PM tile matrix set from uploads, optionally chained on an existing pyramid',
  priority: 'STANDARD',
  input_types: { upload: ['RASTER'], stored_data: [PYRAMID_TYPE] },
  output_type: { stored_data: PYRAMID_TYPE, storage: ['FILESYSTEM'] },
  required_checks: [RASTER_CHECK._id],
  parameters: [
    { name: 'tms', description: 'Tile matrix set of the pyramid', mandatory: false, default_value: 'PM', constraints: { enum: ['PM'] } },
    { name: 'compression', description: 'Format of the tiles', mandatory: false, default_value: 'jpg', constraints: { enum: [...TILE_FORMATS] } },
    { name: 'interpolation', description: 'Resampling kernel of the reprojection', mandatory: false, default_value: 'bicubic', constraints: { enum: ['nn', 'linear', 'bicubic', 'lanczos'] } },
    { name: 'bottom', description: 'Bottom (most detailed) level: by default the level nearest the resolution of the uploads, or the parent\'s', mandatory: false, constraints: { type: 'integer', minimum: 0, maximum: 21 } },
    { name: 'top', description: 'Top (least detailed) level', mandatory: false, default_value: 0, constraints: { type: 'integer', minimum: 0, maximum: 21 } },
    { name: 'quality', description: 'Quality of jpg and webp tiles', mandatory: false, default_value: 85, constraints: { type: 'integer', minimum: 1, maximum: 100 } },
    { name: 'nodata', description: 'Colour given to nodata in jpg tiles, one value per band', mandatory: false, constraints: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 255 } } },
    { name: 'bands', description: 'Bands of the uploads to read, 1 or 3 of them (1-based), as the CLI\'s --bands', mandatory: false, constraints: { type: 'array', items: { type: 'integer', minimum: 1 } } },
    { name: 'scale', description: '16-bit input mapped to bytes: one [min, max] for every band, or one per band, as the CLI\'s --scale', mandatory: false, constraints: { type: 'array', items: { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 } } },
  ],
} as const;

/**
 * Whether an offering's published copy is served: PUBLISHED, MODIFYING (until the switch commits), or
 * UNSTABLE after a failed synchronisation (it keeps serving what it served; `unserved` marks a first
 * publication that failed, which serves nothing).
 */
export function servesPublished(o: Offering): boolean {
  return o.status === 'PUBLISHED' || o.status === 'MODIFYING' || (o.status === 'UNSTABLE' && !o.unserved);
}

/** Every stored data an offering's published copy serves. */
export function publishedStoredData(p: Published): string[] {
  return [p.stored_data, ...(p.more ?? []).map((m) => m.stored_data)];
}

/** The folder under pyramids/ that holds a stored data's current pyramid. */
export function pyramidFolder(sd: StoredData): string {
  return sd.folder ?? sd._id;
}

/** API keys are kept only as this hash: sha256, hex. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** What a new entity starts with: made now, by `initiator` (a user id). */
export function created(initiator: string): Pick<Entity, 'creation' | 'update' | 'tags' | 'last_event'> {
  const t = now();
  return { creation: t, update: t, tags: {}, last_event: { title: 'creation', date: t, initiator: { _id: initiator } } };
}

export function now(): string {
  return new Date().toISOString();
}

/**
 * The platform's second raster processing: a chained pyramid, or several pyramids of one tile matrix set and
 * format (later ones over earlier ones), fused into one standalone pyramid whose tiles are copied, not recomputed.
 */
export const PYRAMID_FUSION = {
  _id: '5d0b6c3e-2f8a-4b71-9c4e-8a1f3e6d2b07',
  name: 'Fusion de pyramides raster',
  technical_name: 'pyramid-fusion',
  description: 'Fuses a chained pyramid, or several pyramids of one tile matrix set and format (later ones drawn over earlier ones), into one standalone pyramid',
  priority: 'STANDARD',
  input_types: { upload: [], stored_data: [PYRAMID_TYPE] },
  output_type: { stored_data: PYRAMID_TYPE, storage: ['FILESYSTEM'] },
  required_checks: [],
  parameters: [
    { name: 'top', description: 'Top (least detailed) level kept: by default the inputs\' top', mandatory: false, constraints: { type: 'integer', minimum: 0, maximum: 21 } },
    { name: 'bottom', description: 'Bottom (most detailed) level kept: by default the inputs\' bottom', mandatory: false, constraints: { type: 'integer', minimum: 0, maximum: 21 } },
    {
      name: 'bbox',
      description: 'Only the tiles meeting this box, in degrees',
      mandatory: false,
      constraints: { type: 'object', properties: { west: { type: 'number' }, south: { type: 'number' }, east: { type: 'number' }, north: { type: 'number' } } },
    },
    { name: 'parallelization', description: 'Tiles read and composited at once', mandatory: false, default_value: 4, constraints: { type: 'integer', minimum: 1, maximum: 64 } },
  ],
} as const;
