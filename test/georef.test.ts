// Georeferencing math: GCPs to an affine geotransform (gdalwarp's order-1 polynomial), and the linear unit of
// ProjLinearUnitsGeoKey over an EPSG projected code.
import { describe, expect, it } from 'vitest';
import { transformer, WGS84 } from '../src/geo/crs.js';
import { crsFromGeoKeys } from '../src/geo/geokeys.js';
import { fitAffine } from '../src/raster/georef.js';

describe('fitAffine', () => {
  const g = [652000, 100, 20, 6862000, -10, -100];
  const at = (col: number, row: number) => ({ col, row, x: g[0] + col * g[1] + row * g[2], y: g[3] + col * g[4] + row * g[5] });

  it('recovers an affine transform from exact GCPs', () => {
    const fit = fitAffine([at(0, 0), at(64, 0), at(0, 48), at(64, 48)])!;
    fit.forEach((v, i) => expect(v).toBeCloseTo(g[i], 6));
  });

  it('is the least-squares fit: residuals sum to zero and are orthogonal to col and row', () => {
    const gcps = [at(0, 0), at(64, 0), at(0, 48), at(64, 48), at(32, 24)].map((p, i) => ({ ...p, x: p.x + [0, 30, -20, 10, 7][i], y: p.y + [0, -10, 15, 25, -4][i] }));
    const f = fitAffine(gcps)!;
    for (const axis of [0, 3]) {
      const res = gcps.map((p) => (axis === 0 ? p.x : p.y) - (f[axis] + p.col * f[axis + 1] + p.row * f[axis + 2]));
      expect(res.reduce((s, r) => s + r, 0)).toBeCloseTo(0, 6);
      expect(res.reduce((s, r, i) => s + r * gcps[i].col, 0)).toBeCloseTo(0, 4);
      expect(res.reduce((s, r, i) => s + r * gcps[i].row, 0)).toBeCloseTo(0, 4);
    }
  });

  it('has no answer for aligned or too few GCPs', () => {
    expect(fitAffine([at(0, 0), at(10, 10)])).toBeNull();
    expect(fitAffine([at(0, 0), at(10, 10), at(20, 20), at(30, 30)])).toBeNull();
  });
});

describe('ProjLinearUnitsGeoKey over an EPSG projected code', () => {
  const keys = (unit?: number) => ({ GTModelTypeGeoKey: 1, ProjectedCSTypeGeoKey: 32616, ...(unit ? { ProjLinearUnitsGeoKey: unit } : {}) });

  it('keeps the EPSG CRS when the unit is its own', () => {
    expect(crsFromGeoKeys(keys(9001)).epsg).toBe(32616);
    expect(crsFromGeoKeys(keys()).epsg).toBe(32616);
  });

  it('reads the coordinates in the override unit, the origin staying in place', () => {
    const ft = crsFromGeoKeys(keys(9003));
    expect(ft.epsg).toBeUndefined();
    expect(ft.units).toBe('us-ft');
    expect(ft.name).toMatch(/US survey feet \(ProjLinearUnitsGeoKey\)/);
    // the false easting, 500 000 m, in US survey feet: the central meridian
    const [lon, lat] = transformer(ft, WGS84).forward(500000 / (1200 / 3937), 0);
    expect(lon).toBeCloseTo(-87, 9);
    expect(lat).toBeCloseTo(0, 9);
    const km = crsFromGeoKeys({ GTModelTypeGeoKey: 1, ProjectedCSTypeGeoKey: 2154, ProjLinearUnitsGeoKey: 9036 });
    const [lon2, lat2] = transformer(km, WGS84).forward(700, 6600);
    expect(lon2).toBeCloseTo(3, 9);
    expect(lat2).toBeCloseTo(46.5, 9);
  });
});
