// The `pyramid-fusion` processing's checks of an execution before it is created: its inputs are GENERATED
// pyramids of the datastore, of one tile matrix set and format, and the levels asked are theirs (a fusion
// copies tiles and computes none). What it runs is src/pyramid/fuse.ts, through the job queue.

import { z } from 'zod';
import { PYRAMID_TYPE, type State } from '../state/model.js';
import { badRequest } from './http.js';

const lon = z.number().min(-180).max(180);
const lat = z.number().min(-90).max(90);

/** The `bbox` parameter: degrees, written as a configuration's bbox is. */
export const fusionBbox = z
  .strictObject({ west: lon, south: lat, east: lon, north: lat })
  .refine((b) => b.west < b.east && b.south < b.north, 'west must be less than east and south less than north');

/** What the checks read of an execution's body. */
interface FusionRequest {
  inputs: { upload: string[]; stored_data: string[] };
  output: { stored_data: object };
  parameters: { top?: number; bottom?: number };
}

/** Throws a 400 naming the field for anything a fusion cannot take. */
export function checkFusion(s: Readonly<State>, d: string, b: FusionRequest): void {
  const ids = b.inputs.stored_data;
  if (b.inputs.upload.length > 0) throw badRequest('inputs.upload: pyramid-fusion fuses pyramids (inputs.stored_data) and takes no upload');
  if (ids.length === 0) throw badRequest('inputs.stored_data: pyramid-fusion needs at least one pyramid');
  if (new Set(ids).size !== ids.length) throw badRequest('inputs.stored_data: a pyramid is given twice');
  if ('_id' in b.output.stored_data) throw badRequest('output.stored_data: pyramid-fusion makes a new stored data (give its name), it updates none');
  const pyramids = ids.map((id, i) => {
    const sd = Object.hasOwn(s.stored_data, id) ? s.stored_data[id] : undefined;
    if (!sd || sd.datastore !== d) throw badRequest(`inputs.stored_data.${i}: no stored data ${id} in this datastore`);
    if (sd.type !== PYRAMID_TYPE || sd.status !== 'GENERATED' || !sd.type_infos) throw badRequest(`inputs.stored_data.${i}: stored data ${id} is ${sd.status}, not a GENERATED pyramid`);
    return { id, i, ti: sd.type_infos };
  });
  const [first] = pyramids;
  for (const { id, i, ti } of pyramids) {
    if (ti.tms !== first.ti.tms) throw badRequest(`inputs.stored_data.${i}: ${id} is in tile matrix set ${ti.tms}, ${first.id} in ${first.ti.tms}: fused pyramids share one`);
    if (ti.compression !== first.ti.compression) {
      throw badRequest(`inputs.stored_data.${i}: ${id} is ${ti.compression}, ${first.id} ${first.ti.compression}: fused pyramids share one format, their tiles are copied`);
    }
  }
  const levels = pyramids.flatMap((x) => x.ti.levels.map(Number));
  const [lo, hi] = [Math.min(...levels), Math.max(...levels)];
  const p = b.parameters;
  if (p.bottom !== undefined && p.bottom > hi) throw badRequest(`parameters.bottom: level ${p.bottom} is below the pyramids' levels (${lo}-${hi}); a fusion computes no level`);
  if (p.top !== undefined && p.top < lo) throw badRequest(`parameters.top: level ${p.top} is above the pyramids' levels (${lo}-${hi}); a fusion computes no level`);
}
