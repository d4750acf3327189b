// WMTS 1.0.0 over real HTTP: capabilities in the XSD's element order, KVP and RESTful GetTile against the
// XYZ and TMS routes, every exception with its code, locator and status, GetFeatureInfo in four formats
// (GeoJSON and GML as features),
// and GDAL's WMTS driver as a real client.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { XMLParser } from 'fast-xml-parser';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mercatorToLonLat, PM, tileBounds, tileLimitsForBounds, type Bbox, type TileLimits } from '../../src/geo/tms.js';
import type { PyramidDescriptor } from '../../src/pyramid/descriptor.js';
import { EXTRA_INFO_FORMATS, INFO_FORMATS, renderFeatureInfo } from '../../src/protocols/featureinfo.js';
import { decodeTile } from '../../src/tiles/codec.js';
import type { RawTile } from '../../src/raster/tile.js';
import { assemble, compare } from '../helpers/images.js';
import { miriamJpeg, northPng, startServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

let srv: TestServer;
let northDir: string;
let miriamDir: string;
let northDesc: PyramidDescriptor;
let miriamDesc: PyramidDescriptor;

const SPECIAL_TITLE = `Tom & Jerry's <"quoted"> layer`;
const SPECIAL_ABSTRACT = `a < b && c > d; <script>alert("x")</script> 'end'`;
const SPECIAL_KEYWORDS = ['<k>&', `"q'`];

beforeAll(async () => {
  northDir = await northPng();
  miriamDir = await miriamJpeg();
  northDesc = JSON.parse(readFileSync(join(northDir, 'pyramid.json'), 'utf8'));
  miriamDesc = JSON.parse(readFileSync(join(miriamDir, 'pyramid.json'), 'utf8'));
  srv = await startServer([
    { name: 'north', dir: northDir, title: 'North relief', abstract: 'Relief of northern France', keywords: ['relief', 'France'] },
    { name: 'miriam', dir: miriamDir, title: 'MODIS Miriam' },
    { name: 'specials', dir: northDir, title: SPECIAL_TITLE, abstract: SPECIAL_ABSTRACT, keywords: SPECIAL_KEYWORDS, featureInfo: false },
    { name: 'hidden', dir: northDir, available: false },
  ]);
});
afterAll(async () => {
  await srv?.close();
});

// ---------------------------------------------------------------------------------------------------
// helpers

const ARRAYS = new Set(['Layer', 'TileMatrix', 'TileMatrixLimits', 'ResourceURL', 'InfoFormat', 'ows:Keyword', 'ows:Operation', 'ows:Get', 'TileMatrixSet', 'value']);
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (name, jpath) => ARRAYS.has(name) && !(name === 'TileMatrixSet' && String(jpath).endsWith('TileMatrixSetLink.TileMatrixSet')) && !(name === 'TileMatrix' && String(jpath).endsWith('TileMatrixLimits.TileMatrix')),
});
const gmlParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, parseAttributeValue: false });
const ordered = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', preserveOrder: true });

type Json = any;

interface Node {
  name: string;
  attrs: Record<string, string>;
  children: Node[];
}

/** The element tree with children in document order (preserveOrder keeps them as one array). */
function tree(xml: string): Node {
  const conv = (o: Record<string, unknown>): Node | undefined => {
    const name = Object.keys(o).find((k) => k !== ':@' && k !== '#text');
    if (!name) return undefined;
    const kids = (o[name] as Record<string, unknown>[]).map(conv).filter((n): n is Node => !!n);
    return { name, attrs: (o[':@'] as Record<string, string>) ?? {}, children: kids };
  };
  const roots = (ordered.parse(xml) as Record<string, unknown>[]).map(conv).filter((n): n is Node => !!n && n.name !== '?xml');
  return roots[0];
}

function names(n: Node): string[] {
  return n.children.map((c) => c.name);
}

function child(n: Node, name: string): Node {
  const c = n.children.find((x) => x.name === name);
  if (!c) throw new Error(`no ${name} in ${n.name}`);
  return c;
}

/** Children must follow the XSD sequence: each name known, none before an earlier one's position. */
function expectSequence(n: Node, sequence: string[], required: string[], where = n.name): void {
  let k = 0;
  const got = names(n);
  for (const name of got) {
    const idx = sequence.indexOf(name);
    expect(idx, `${where}: unexpected <${name}> in ${got.join(', ')}`).toBeGreaterThanOrEqual(0);
    expect(idx, `${where}: <${name}> out of order in ${got.join(', ')}`).toBeGreaterThanOrEqual(k);
    k = idx;
  }
  for (const r of required) expect(got, `${where}: <${r}> is mandatory`).toContain(r);
}

// Sequences of the WMTS 1.0.0 schemas (wmtsGetCapabilities_response.xsd, wmts.xsd) over OWS 1.1
// (owsGetCapabilities.xsd CapabilitiesBaseType, owsDataIdentification.xsd DescriptionType,
// owsContents.xsd DatasetDescriptionSummaryBaseType and ContentsBaseType, owsServiceIdentification.xsd,
// owsServiceProvider.xsd, owsOperationsMetadata.xsd).
const DESCRIPTION = ['ows:Title', 'ows:Abstract', 'ows:Keywords'];
const XSD = {
  Capabilities: ['ows:ServiceIdentification', 'ows:ServiceProvider', 'ows:OperationsMetadata', 'Contents', 'Themes', 'WSDL', 'ServiceMetadataURL'],
  ServiceIdentification: [...DESCRIPTION, 'ows:ServiceType', 'ows:ServiceTypeVersion', 'ows:Profile', 'ows:Fees', 'ows:AccessConstraints'],
  ServiceProvider: ['ows:ProviderName', 'ows:ProviderSite', 'ows:ServiceContact'],
  OperationsMetadata: ['ows:Operation', 'ows:Parameter', 'ows:Constraint', 'ows:ExtendedCapabilities'],
  Operation: ['ows:DCP', 'ows:Parameter', 'ows:Constraint', 'ows:Metadata'],
  Get: ['ows:Constraint'],
  Constraint: ['ows:AllowedValues', 'ows:AnyValue', 'ows:NoValues', 'ows:ValuesReference', 'ows:DefaultValue', 'ows:Meaning', 'ows:DataType'],
  Contents: ['Layer', 'ows:OtherSource', 'TileMatrixSet'],
  Layer: [
    ...DESCRIPTION,
    'ows:WGS84BoundingBox',
    'ows:Identifier',
    'ows:BoundingBox',
    'ows:Metadata',
    'ows:DatasetDescriptionSummary',
    'Style',
    'Format',
    'InfoFormat',
    'Dimension',
    'TileMatrixSetLink',
    'ResourceURL',
  ],
  BoundingBox: ['ows:LowerCorner', 'ows:UpperCorner'],
  Style: [...DESCRIPTION, 'ows:Identifier', 'LegendURL'],
  TileMatrixSetLink: ['TileMatrixSet', 'TileMatrixSetLimits'],
  TileMatrixLimits: ['TileMatrix', 'MinTileRow', 'MaxTileRow', 'MinTileCol', 'MaxTileCol'],
  TileMatrixSet: [...DESCRIPTION, 'ows:Identifier', 'ows:BoundingBox', 'ows:SupportedCRS', 'WellKnownScaleSet', 'TileMatrix'],
  TileMatrix: [...DESCRIPTION, 'ows:Identifier', 'ScaleDenominator', 'TopLeftCorner', 'TileWidth', 'TileHeight', 'MatrixWidth', 'MatrixHeight'],
};

async function capsText(path = '/wmts?SERVICE=WMTS&REQUEST=GetCapabilities'): Promise<string> {
  const r = await fetch(srv.url + path);
  expect(r.status, path).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^application\/xml/);
  return r.text();
}

function kvpTile(layer: string, z: number, row: number, col: number, format = 'image/png'): string {
  return `/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${layer}&STYLE=normal&FORMAT=${encodeURIComponent(format)}&TILEMATRIXSET=PM&TILEMATRIX=${z}&TILEROW=${row}&TILECOL=${col}`;
}

async function bytes(path: string, init?: RequestInit): Promise<{ status: number; type: string | null; body: Buffer; res: Response }> {
  const res = await fetch(srv.url + path, init);
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()), res };
}

interface OwsError {
  status: number;
  code: string;
  locator?: string;
  text: string;
  raw: string;
}

async function owsError(path: string): Promise<OwsError> {
  const r = await fetch(srv.url + path);
  const raw = await r.text();
  expect(r.headers.get('content-type'), path).toMatch(/^application\/xml/);
  const doc = parser.parse(raw);
  const ex = doc.ExceptionReport.Exception;
  expect(doc.ExceptionReport['@xmlns']).toBe('http://www.opengis.net/ows/1.1');
  return { status: r.status, code: ex['@exceptionCode'], locator: ex['@locator'], text: ex.ExceptionText, raw };
}

/**
 * The advertised box lies in the pyramid's extent, every tile under it at every level is inside that
 * level's limits (what GDAL asks for when it exports the whole layer), and it keeps every stored tile's data.
 */
function expectBoxAgreesWithLimits(desc: PyramidDescriptor, box: Bbox): void {
  const eps = 1e-6;
  expect(box.minX).toBeGreaterThanOrEqual(desc.bbox.minX - eps);
  expect(box.maxX).toBeLessThanOrEqual(desc.bbox.maxX + eps);
  expect(box.minY).toBeGreaterThanOrEqual(desc.bbox.minY - eps);
  expect(box.maxY).toBeLessThanOrEqual(desc.bbox.maxY + eps);
  for (const lv of desc.levels) {
    const under = tileLimitsForBounds(PM, lv.limits.z, box)!;
    expect(under.minX, `level ${lv.id}`).toBeGreaterThanOrEqual(lv.limits.minX);
    expect(under.maxX, `level ${lv.id}`).toBeLessThanOrEqual(lv.limits.maxX);
    expect(under.minY, `level ${lv.id}`).toBeGreaterThanOrEqual(lv.limits.minY);
    expect(under.maxY, `level ${lv.id}`).toBeLessThanOrEqual(lv.limits.maxY);
  }
  const bottom = limitsOf(desc, desc.bottom);
  const stored = [...srv.ctx.holder.current.layers.values()].find((l) => l.chain.descriptor.id === desc.id)!.chain;
  for (let y = bottom.minY; y <= bottom.maxY; y++) {
    for (let x = bottom.minX; x <= bottom.maxX; x++) {
      if (!stored.locate({ z: desc.bottom, x, y })) continue;
      const t = tileBounds(PM, { z: desc.bottom, x, y });
      // the part of a data tile inside the pyramid's extent is inside the box
      expect(Math.max(t.minX, desc.bbox.minX)).toBeGreaterThanOrEqual(box.minX - eps);
      expect(Math.min(t.maxX, desc.bbox.maxX)).toBeLessThanOrEqual(box.maxX + eps);
      expect(Math.max(t.minY, desc.bbox.minY)).toBeGreaterThanOrEqual(box.minY - eps);
      expect(Math.min(t.maxY, desc.bbox.maxY)).toBeLessThanOrEqual(box.maxY + eps);
    }
  }
}

function limitsOf(desc: PyramidDescriptor, z: number): TileLimits {
  return desc.levels.find((l) => l.limits.z === z)!.limits;
}

/** A tile of the level that holds data (the XYZ route's own tile, not blank), y from the top. */
async function dataTile(layer: string, desc: PyramidDescriptor, z: number, ext: string): Promise<{ z: number; x: number; y: number }> {
  const srvLayer = srv.ctx.holder.current.get(layer)!;
  const l = limitsOf(desc, z);
  for (let y = l.minY; y <= l.maxY; y++) for (let x = l.minX; x <= l.maxX; x++) if (srvLayer.chain.locate({ z, x, y })) return { z, x, y };
  throw new Error(`no tile with data at level ${z} (${ext})`);
}

// ---------------------------------------------------------------------------------------------------

describe('GetCapabilities', () => {
  it('KVP and RESTful forms return the same document, gzip-compressed on request', async () => {
    const kvp = await capsText();
    const rest = await capsText('/wmts/1.0.0/WMTSCapabilities.xml');
    expect(rest).toBe(kvp);
    // parameter names are case-insensitive (07-057r7 8.2.1)
    expect(await capsText('/wmts?service=WMTS&request=GetCapabilities&Version=1.0.0')).toBe(kvp);
    expect(await capsText('/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&ACCEPTVERSIONS=2.0.0,1.0.0')).toBe(kvp);
    const gz = await fetch(`${srv.url}/wmts/1.0.0/WMTSCapabilities.xml`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(await gz.text()).toBe(kvp);
  });

  it('follows the element order of the WMTS 1.0.0 and OWS 1.1 schemas', async () => {
    const root = tree(await capsText());
    expect(root.name).toBe('Capabilities');
    expect(root.attrs['@xmlns']).toBe('http://www.opengis.net/wmts/1.0');
    expect(root.attrs['@xmlns:ows']).toBe('http://www.opengis.net/ows/1.1');
    expect(root.attrs['@xmlns:xlink']).toBe('http://www.w3.org/1999/xlink');
    expect(root.attrs['@xsi:schemaLocation']).toBe('http://www.opengis.net/wmts/1.0 http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd');
    expect(root.attrs['@version']).toBe('1.0.0');
    expectSequence(root, XSD.Capabilities, ['Contents']);
    expect(names(root)).toEqual(['ows:ServiceIdentification', 'ows:ServiceProvider', 'ows:OperationsMetadata', 'Contents', 'ServiceMetadataURL']);
    expectSequence(child(root, 'ows:ServiceIdentification'), XSD.ServiceIdentification, ['ows:ServiceType', 'ows:ServiceTypeVersion']);
    expectSequence(child(root, 'ows:ServiceProvider'), XSD.ServiceProvider, ['ows:ProviderName', 'ows:ServiceContact']);
    const om = child(root, 'ows:OperationsMetadata');
    expectSequence(om, XSD.OperationsMetadata, ['ows:Operation']);
    for (const op of om.children) {
      expectSequence(op, XSD.Operation, ['ows:DCP'], `Operation ${op.attrs['@name']}`);
      for (const get of child(child(op, 'ows:DCP'), 'ows:HTTP').children) {
        expect(get.name).toBe('ows:Get');
        expectSequence(get, XSD.Get, []);
        for (const c of get.children) expectSequence(c, XSD.Constraint, []);
      }
    }
    const contents = child(root, 'Contents');
    expectSequence(contents, XSD.Contents, []);
    expect(names(contents)).toEqual(['Layer', 'Layer', 'Layer', 'TileMatrixSet']);
    for (const [n, layer] of contents.children.filter((c) => c.name === 'Layer').entries()) {
      expectSequence(layer, XSD.Layer, ['ows:Identifier', 'Style', 'Format', 'TileMatrixSetLink'], `Layer #${n}`);
      expectSequence(child(layer, 'ows:WGS84BoundingBox'), XSD.BoundingBox, XSD.BoundingBox);
      expectSequence(child(layer, 'ows:BoundingBox'), XSD.BoundingBox, XSD.BoundingBox);
      expectSequence(child(layer, 'Style'), XSD.Style, ['ows:Identifier']);
      const link = child(layer, 'TileMatrixSetLink');
      expectSequence(link, XSD.TileMatrixSetLink, ['TileMatrixSet']);
      for (const lim of child(link, 'TileMatrixSetLimits').children) {
        expect(lim.name).toBe('TileMatrixLimits');
        expect(names(lim)).toEqual(XSD.TileMatrixLimits);
      }
    }
    // the first layer (miriam, names sorted) has every kind of child we emit, in exactly this order
    const miriam = contents.children[0];
    expect(names(miriam)).toEqual([
      'ows:Title',
      'ows:WGS84BoundingBox',
      'ows:Identifier',
      'ows:BoundingBox',
      'Style',
      'Format',
      'InfoFormat',
      'InfoFormat',
      'InfoFormat',
      'InfoFormat',
      'TileMatrixSetLink',
      'ResourceURL',
      'ResourceURL',
      'ResourceURL',
      'ResourceURL',
      'ResourceURL',
    ]);
    const north = contents.children[1];
    expect(names(north).slice(0, 6)).toEqual(['ows:Title', 'ows:Abstract', 'ows:Keywords', 'ows:WGS84BoundingBox', 'ows:Identifier', 'ows:BoundingBox']);
    const tms = child(contents, 'TileMatrixSet');
    expectSequence(tms, XSD.TileMatrixSet, ['ows:Identifier', 'ows:SupportedCRS', 'TileMatrix']);
    for (const tm of tms.children.filter((c) => c.name === 'TileMatrix')) expect(names(tm)).toEqual(XSD.TileMatrix.slice(3));
  });

  it('lists the visible layers with their metadata, limits equal to the pyramids and ResourceURL templates', async () => {
    const caps = parser.parse(await capsText()).Capabilities;
    const layers: Json[] = caps.Contents.Layer;
    expect(layers.map((l) => l['ows:Identifier'])).toEqual(['miriam', 'north', 'specials']);
    const byId = (id: string) => layers.find((l) => l['ows:Identifier'] === id)!;
    const cases: [string, PyramidDescriptor, string, string][] = [
      ['north', northDesc, 'image/png', 'png'],
      ['miriam', miriamDesc, 'image/jpeg', 'jpg'],
    ];
    for (const [id, desc, mime, ext] of cases) {
      const l = byId(id);
      expect(l['ows:BoundingBox']['@crs']).toBe('urn:ogc:def:crs:EPSG::3857');
      const [minX, minY] = l['ows:BoundingBox']['ows:LowerCorner'].split(' ').map(Number);
      const [maxX, maxY] = l['ows:BoundingBox']['ows:UpperCorner'].split(' ').map(Number);
      expectBoxAgreesWithLimits(desc, { minX, minY, maxX, maxY });
      // the WGS84 box is the same box in lon/lat
      const [w0, w1] = [mercatorToLonLat(minX, minY), mercatorToLonLat(maxX, maxY)];
      l['ows:WGS84BoundingBox']['ows:LowerCorner'].split(' ').forEach((v: string, k: number) => expect(Number(v)).toBeCloseTo(w0[k], 9));
      l['ows:WGS84BoundingBox']['ows:UpperCorner'].split(' ').forEach((v: string, k: number) => expect(Number(v)).toBeCloseTo(w1[k], 9));
      expect(l.Style['@isDefault']).toBe('true');
      expect(l.Style['ows:Identifier']).toBe('normal');
      expect(l.Format).toBe(mime);
      expect(l.InfoFormat).toEqual(['text/plain', 'application/json', 'text/html', 'application/vnd.ogc.gml']);
      expect(l.TileMatrixSetLink.TileMatrixSet).toBe('PM');
      const limits = l.TileMatrixSetLink.TileMatrixSetLimits.TileMatrixLimits.map((t: Json) => ({
        z: Number(t.TileMatrix),
        minY: Number(t.MinTileRow),
        maxY: Number(t.MaxTileRow),
        minX: Number(t.MinTileCol),
        maxX: Number(t.MaxTileCol),
      }));
      // pyramid.json's levels (no top/bottom given: the layer serves them all), and the registry's layer
      const want = desc.levels.map((lv) => ({ z: lv.limits.z, minY: lv.limits.minY, maxY: lv.limits.maxY, minX: lv.limits.minX, maxX: lv.limits.maxX }));
      expect(limits).toEqual(want);
      expect(limits.map((t: Json) => String(t.z))).toEqual(desc.levels.map((lv) => lv.id));
      expect(limits).toEqual(srv.ctx.holder.current.get(id)!.levels.map((lv) => ({ z: lv.z, minY: lv.minY, maxY: lv.maxY, minX: lv.minX, maxX: lv.maxX })));
      const base = `${srv.url}/wmts/1.0.0/${id}/{Style}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}`;
      expect(l.ResourceURL.map((r: Json) => [r['@resourceType'], r['@format'], r['@template']])).toEqual([
        ['tile', mime, `${base}.${ext}`],
        ['FeatureInfo', 'text/plain', `${base}/{J}/{I}.txt`],
        ['FeatureInfo', 'application/json', `${base}/{J}/{I}.json`],
        ['FeatureInfo', 'text/html', `${base}/{J}/{I}.html`],
        ['FeatureInfo', 'application/vnd.ogc.gml', `${base}/{J}/{I}.gml`],
      ]);
    }
    expect(byId('north')['ows:Title']).toBe('North relief');
    expect(byId('north')['ows:Abstract']).toBe('Relief of northern France');
    expect(byId('north')['ows:Keywords']['ows:Keyword']).toEqual(['relief', 'France']);
    // no GetFeatureInfo: no InfoFormat, only the tile ResourceURL
    expect(byId('specials').InfoFormat).toBeUndefined();
    expect(byId('specials').ResourceURL).toHaveLength(1);
  });

  it('escapes titles, abstracts and keywords', async () => {
    const text = await capsText();
    const l = parser.parse(text).Capabilities.Contents.Layer.find((x: Json) => x['ows:Identifier'] === 'specials');
    expect(l['ows:Title']).toBe(SPECIAL_TITLE);
    expect(l['ows:Abstract']).toBe(SPECIAL_ABSTRACT);
    expect(l['ows:Keywords']['ows:Keyword']).toEqual(SPECIAL_KEYWORDS);
    expect(text).not.toContain('<script>');
    expect(text).not.toContain('<"quoted">');
    expect(text).toContain('Tom &amp; Jerry&apos;s &lt;&quot;quoted&quot;&gt; layer');
  });

  it('describes the PM tile matrix set down to the deepest served level, and the operations in both encodings', async () => {
    const caps = parser.parse(await capsText()).Capabilities;
    const tms = caps.Contents.TileMatrixSet[0];
    expect(tms['ows:Identifier']).toBe('PM');
    expect(tms['ows:SupportedCRS']).toBe('urn:ogc:def:crs:EPSG::3857');
    expect(tms.WellKnownScaleSet).toBe('urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible');
    const deepest = Math.max(northDesc.bottom, miriamDesc.bottom);
    expect(tms.TileMatrix).toHaveLength(deepest + 1);
    tms.TileMatrix.forEach((m: Json, z: number) => {
      expect(m['ows:Identifier']).toBe(String(z));
      expect(Number(m.ScaleDenominator) / (559082264.0287178 / 2 ** z)).toBeCloseTo(1, 12);
      const [x, y] = m.TopLeftCorner.split(' ').map(Number);
      expect(x).toBeCloseTo(-20037508.3427892, 6);
      expect(y).toBeCloseTo(20037508.3427892, 6);
      expect([m.TileWidth, m.TileHeight, m.MatrixWidth, m.MatrixHeight].map(Number)).toEqual([256, 256, 2 ** z, 2 ** z]);
    });
    expect(caps['ows:ServiceIdentification']['ows:ServiceType']).toBe('OGC WMTS');
    expect(caps['ows:ServiceIdentification']['ows:ServiceTypeVersion']).toBe('1.0.0');
    const ops: Json[] = caps['ows:OperationsMetadata']['ows:Operation'];
    expect(ops.map((o) => o['@name'])).toEqual(['GetCapabilities', 'GetTile', 'GetFeatureInfo']);
    for (const op of ops) {
      const gets = op['ows:DCP']['ows:HTTP']['ows:Get'].map((g: Json) => [g['ows:Constraint']['@name'], g['ows:Constraint']['ows:AllowedValues']['ows:Value'], g['@xlink:href']]);
      const rest = op['@name'] === 'GetCapabilities' ? `${srv.url}/wmts/1.0.0/WMTSCapabilities.xml` : `${srv.url}/wmts/1.0.0/`;
      expect(gets).toEqual([
        ['GetEncoding', 'KVP', `${srv.url}/wmts?`],
        ['GetEncoding', 'RESTful', rest],
      ]);
    }
    expect(caps.ServiceMetadataURL['@xlink:href']).toBe(`${srv.url}/wmts/1.0.0/WMTSCapabilities.xml`);
  });

  it('writes the public URL behind a proxy, and honours Sections', async () => {
    const r = await fetch(`${srv.url}/wmts/1.0.0/WMTSCapabilities.xml`, { headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'tiles.example.org' } });
    const l = parser.parse(await r.text()).Capabilities.Contents.Layer[0];
    expect(l.ResourceURL[0]['@template']).toMatch(/^https:\/\/tiles\.example\.org\/wmts\/1\.0\.0\/miriam\//);
    const only = tree(await capsText('/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&SECTIONS=Contents'));
    expect(names(only)).toEqual(['Contents', 'ServiceMetadataURL']);
    const two = tree(await capsText('/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&SECTIONS=ServiceIdentification,OperationsMetadata'));
    expect(names(two)).toEqual(['ows:ServiceIdentification', 'ows:OperationsMetadata', 'ServiceMetadataURL']);
  });
});

describe('GetTile', () => {
  it('KVP and RESTful tiles are the XYZ and TMS tiles, byte for byte', async () => {
    for (const [layer, desc, mime, ext] of [
      ['north', northDesc, 'image/png', 'png'],
      ['miriam', miriamDesc, 'image/jpeg', 'jpg'],
    ] as const) {
      for (const z of [desc.bottom, desc.bottom - 1, 0]) {
        const t = await dataTile(layer, desc, z, ext);
        const xyz = await bytes(`/tiles/${layer}/${z}/${t.x}/${t.y}.${ext}`);
        const tms = await bytes(`/tms/1.0.0/${layer}/${z}/${t.x}/${2 ** z - 1 - t.y}.${ext}`);
        const kvp = await bytes(kvpTile(layer, z, t.y, t.x, mime));
        const rest = await bytes(`/wmts/1.0.0/${layer}/normal/PM/${z}/${t.y}/${t.x}.${ext}`);
        const lower = await bytes(
          `/wmts?service=WMTS&request=GetTile&version=1.0.0&layer=${layer}&style=normal&format=${encodeURIComponent(mime)}&tilematrixset=PM&TileMatrix=${z}&TileRow=${t.y}&TileCol=${t.x}`,
        );
        for (const r of [xyz, tms, kvp, rest, lower]) {
          expect(r.status).toBe(200);
          expect(r.type).toBe(mime);
        }
        expect(xyz.body.length).toBeGreaterThan(100);
        expect(kvp.body.equals(xyz.body)).toBe(true);
        expect(rest.body.equals(xyz.body)).toBe(true);
        expect(tms.body.equals(xyz.body)).toBe(true);
        expect(lower.body.equals(xyz.body)).toBe(true);
      }
    }
  });

  it('answers If-None-Match with 304 and HEAD without a body, with the ETag and Cache-Control of GetTile', async () => {
    const t = await dataTile('north', northDesc, 6, 'png');
    for (const path of [kvpTile('north', 6, t.y, t.x), `/wmts/1.0.0/north/normal/PM/6/${t.y}/${t.x}.png`]) {
      const first = await bytes(path);
      const etag = first.res.headers.get('etag');
      expect(etag).toBeTruthy();
      expect(first.res.headers.get('cache-control')).toMatch(/max-age=\d+/);
      const again = await fetch(srv.url + path, { headers: { 'If-None-Match': etag! } });
      expect(again.status).toBe(304);
      expect((await again.arrayBuffer()).byteLength).toBe(0);
      const head = await fetch(srv.url + path, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(first.body.length));
      expect(head.headers.get('etag')).toBe(etag);
      expect((await head.arrayBuffer()).byteLength).toBe(0);
    }
  });

  it('serves a 200 blank tile inside the limits where there is no data', async () => {
    const layer = srv.ctx.holder.current.get('north')!;
    const l7 = limitsOf(northDesc, 7);
    let blank: { x: number; y: number } | undefined;
    for (let y = l7.minY; y <= l7.maxY && !blank; y++) for (let x = l7.minX; x <= l7.maxX && !blank; x++) if (!layer.chain.locate({ z: 7, x, y })) blank = { x, y };
    expect(blank).toBeDefined();
    for (const path of [kvpTile('north', 7, blank!.y, blank!.x), `/wmts/1.0.0/north/normal/PM/7/${blank!.y}/${blank!.x}.png`]) {
      const r = await bytes(path);
      expect(r.status).toBe(200);
      expect(r.type).toBe('image/png');
      const img = await decodeTile(r.body);
      expect([img.width, img.height]).toEqual([256, 256]);
      expect(img.alpha.every((a) => a === 0)).toBe(true);
    }
  });
});

describe('exceptions', () => {
  const base = '/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=north&STYLE=normal&FORMAT=image%2Fpng&TILEMATRIXSET=PM';
  const without = (name: string) => base.replace(new RegExp(`&${name}=[^&]*`), '');

  it('gives every bad request its exceptionCode, locator and status', async () => {
    const l6 = limitsOf(northDesc, 6);
    const ok = `TILEMATRIX=6&TILEROW=${l6.minY}&TILECOL=${l6.minX}`;
    const cases: [string, string, string | undefined, number][] = [
      ['/wmts', 'MissingParameterValue', 'SERVICE', 400],
      ['/wmts?REQUEST=GetCapabilities', 'MissingParameterValue', 'SERVICE', 400],
      ['/wmts?SERVICE=WMS&REQUEST=GetCapabilities', 'InvalidParameterValue', 'SERVICE', 400],
      // values are case-sensitive (07-057r7 8.2.1)
      ['/wmts?SERVICE=wmts&REQUEST=GetCapabilities', 'InvalidParameterValue', 'SERVICE', 400],
      ['/wmts?SERVICE=WMTS', 'MissingParameterValue', 'REQUEST', 400],
      ['/wmts?SERVICE=WMTS&REQUEST=GetMap', 'OperationNotSupported', 'REQUEST', 501],
      ['/wmts?SERVICE=WMTS&REQUEST=getcapabilities', 'OperationNotSupported', 'REQUEST', 501],
      ['/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&ACCEPTVERSIONS=2.0.0', 'VersionNegotiationFailed', 'ACCEPTVERSIONS', 400],
      ['/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&VERSION=1.1.0', 'VersionNegotiationFailed', 'VERSION', 400],
      ['/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&SECTIONS=Everything', 'InvalidParameterValue', 'SECTIONS', 400],
      [`${base.replace('VERSION=1.0.0', 'VERSION=2.0.0')}&${ok}`, 'InvalidParameterValue', 'VERSION', 400],
      [`${without('LAYER')}&${ok}`, 'MissingParameterValue', 'LAYER', 400],
      [`${base.replace('LAYER=north', 'LAYER=')}&${ok}`, 'MissingParameterValue', 'LAYER', 400],
      [`${without('STYLE')}&${ok}`, 'MissingParameterValue', 'STYLE', 400],
      [`${without('FORMAT')}&${ok}`, 'MissingParameterValue', 'FORMAT', 400],
      [`${without('TILEMATRIXSET')}&${ok}`, 'MissingParameterValue', 'TILEMATRIXSET', 400],
      [`${base}&TILEROW=0&TILECOL=0`, 'MissingParameterValue', 'TILEMATRIX', 400],
      [`${base}&TILEMATRIX=6&TILECOL=0`, 'MissingParameterValue', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=0`, 'MissingParameterValue', 'TILECOL', 400],
      [`${base.replace('LAYER=north', 'LAYER=nope')}&${ok}`, 'InvalidParameterValue', 'LAYER', 400],
      [`${base.replace('LAYER=north', 'LAYER=hidden')}&${ok}`, 'InvalidParameterValue', 'LAYER', 400],
      [`${base.replace('STYLE=normal', 'STYLE=default')}&${ok}`, 'InvalidParameterValue', 'STYLE', 400],
      [`${base.replace('image%2Fpng', 'image%2Fjpeg')}&${ok}`, 'InvalidParameterValue', 'FORMAT', 400],
      [`${base.replace('TILEMATRIXSET=PM', 'TILEMATRIXSET=WebMercatorQuad')}&${ok}`, 'InvalidParameterValue', 'TILEMATRIXSET', 400],
      [`${base}&TILEMATRIX=x&TILEROW=0&TILECOL=0`, 'InvalidParameterValue', 'TILEMATRIX', 400],
      [`${base}&TILEMATRIX=06&TILEROW=0&TILECOL=0`, 'InvalidParameterValue', 'TILEMATRIX', 400],
      [`${base}&TILEMATRIX=25&TILEROW=0&TILECOL=0`, 'InvalidParameterValue', 'TILEMATRIX', 400],
      [`${base}&TILEMATRIX=6&TILEROW=a&TILECOL=${l6.minX}`, 'InvalidParameterValue', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=-1&TILECOL=${l6.minX}`, 'InvalidParameterValue', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=${l6.minY}&TILECOL=1.5`, 'InvalidParameterValue', 'TILECOL', 400],
      [`${base}&TILEMATRIX=6&TILEROW=${l6.minY}&TILECOL=-3`, 'InvalidParameterValue', 'TILECOL', 400],
      [`${base}&TILEMATRIX=6&TILEROW=${l6.maxY + 1}&TILECOL=${l6.minX}`, 'TileOutOfRange', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=${l6.minY - 1}&TILECOL=${l6.minX}`, 'TileOutOfRange', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=99999999999999&TILECOL=${l6.minX}`, 'TileOutOfRange', 'TILEROW', 400],
      [`${base}&TILEMATRIX=6&TILEROW=${l6.minY}&TILECOL=${l6.maxX + 1}`, 'TileOutOfRange', 'TILECOL', 400],
      // a tile matrix of the set that this layer does not serve (miriam stops above north's deepest level)
      [`${base.replace('LAYER=north', 'LAYER=miriam').replace('image%2Fpng', 'image%2Fjpeg')}&TILEMATRIX=${northDesc.bottom}&TILEROW=0&TILECOL=0`, 'TileOutOfRange', 'TILEMATRIX', 400],
      // RESTful: the same checks, locators naming the parameter a path segment stands for
      [`/wmts/1.0.0/nope/normal/PM/6/${l6.minY}/${l6.minX}.png`, 'InvalidParameterValue', 'LAYER', 400],
      [`/wmts/1.0.0/north/default/PM/6/${l6.minY}/${l6.minX}.png`, 'InvalidParameterValue', 'STYLE', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.minY}/${l6.minX}.jpg`, 'InvalidParameterValue', 'FORMAT', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.minY}/${l6.minX}.gif`, 'InvalidParameterValue', 'FORMAT', 400],
      [`/wmts/1.0.0/north/normal/GoogleMapsCompatible/6/${l6.minY}/${l6.minX}.png`, 'InvalidParameterValue', 'TILEMATRIXSET', 400],
      [`/wmts/1.0.0/north/normal/PM/x/${l6.minY}/${l6.minX}.png`, 'InvalidParameterValue', 'TILEMATRIX', 400],
      [`/wmts/1.0.0/north/normal/PM/6/r/${l6.minX}.png`, 'InvalidParameterValue', 'TILEROW', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.minY}/c.png`, 'InvalidParameterValue', 'TILECOL', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.minY}/.png`, 'MissingParameterValue', 'TILECOL', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.maxY + 1}/${l6.minX}.png`, 'TileOutOfRange', 'TILEROW', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${l6.minY}/${l6.maxX + 1}.png`, 'TileOutOfRange', 'TILECOL', 400],
    ];
    for (const [path, code, locator, status] of cases) {
      const e = await owsError(path);
      expect([e.code, e.locator, e.status], path).toEqual([code, locator, status]);
      expect(e.text, path).toBeTruthy();
    }
  });

  it('says which range is allowed', async () => {
    const l6 = limitsOf(northDesc, 6);
    const e = await owsError(`${base}&TILEMATRIX=6&TILEROW=${l6.maxY + 1}&TILECOL=${l6.minX}`);
    expect(e.text).toContain(`rows ${l6.minY} to ${l6.maxY}`);
  });

  it('escapes the values it echoes', async () => {
    const evil = `<script>alert("x")</script>&`;
    for (const path of [
      `${base.replace('LAYER=north', `LAYER=${encodeURIComponent(evil)}`)}&TILEMATRIX=6&TILEROW=0&TILECOL=0`,
      `/wmts/1.0.0/${encodeURIComponent(evil)}/normal/PM/6/0/0.png`,
      `/wmts?SERVICE=WMTS&REQUEST=${encodeURIComponent(evil)}`,
    ]) {
      const e = await owsError(path);
      expect(e.raw, path).not.toContain('<script>');
      expect(e.raw, path).toContain('&lt;script&gt;');
      expect(e.text, path).toContain(evil);
    }
  });
});

describe('GetFeatureInfo', () => {
  const FORMATS = [
    ['text/plain', 'txt'],
    ['application/json', 'json'],
    ['text/html', 'html'],
    ['application/vnd.ogc.gml', 'gml'],
    // accepted as before, not advertised: the same GML
    ['text/xml', 'xml'],
  ] as const;

  function kvpInfo(layer: string, z: number, row: number, col: number, i: number | string, j: number | string, info: string, extra = ''): string {
    return `/wmts?SERVICE=WMTS&REQUEST=GetFeatureInfo&VERSION=1.0.0&LAYER=${layer}&STYLE=normal&TILEMATRIXSET=PM&TILEMATRIX=${z}&TILEROW=${row}&TILECOL=${col}&I=${i}&J=${j}&INFOFORMAT=${encodeURIComponent(info)}${extra}`;
  }

  /** Each format parsed back to {field: text}; values as a space-separated list. */
  async function readInfo(path: string, mime: string): Promise<Record<string, string>> {
    const r = await fetch(srv.url + path);
    const body = await r.text();
    expect(r.status, `${path}: ${body}`).toBe(200);
    expect(r.headers.get('content-type')).toBe(`${mime}; charset=utf-8`);
    const out: Record<string, string> = {};
    switch (mime) {
      case 'application/json': {
        // a GeoJSON FeatureCollection of one point at the pixel centre, in lon/lat, the CRS named
        const fc = JSON.parse(body);
        expect(fc.type).toBe('FeatureCollection');
        expect(fc.crs).toEqual({ type: 'name', properties: { name: 'urn:ogc:def:crs:OGC:1.3:CRS84' } });
        expect(fc.features).toHaveLength(1);
        const f = fc.features[0];
        expect(f.type).toBe('Feature');
        expect(f.geometry.type).toBe('Point');
        expect(f.geometry.coordinates).toEqual([f.properties.lon, f.properties.lat]);
        f.properties.values.forEach((v: number, b: number) => expect(f.properties[`band_${b + 1}`]).toBe(v));
        for (const [k, v] of Object.entries(f.properties)) if (!k.startsWith('band_')) out[k] = Array.isArray(v) ? v.join(' ') : String(v);
        break;
      }
      case 'text/html':
        expect(body).toMatch(/^<!DOCTYPE html>/);
        for (const m of body.matchAll(/<tr><th>([^<]*)<\/th><td>([^<]*)<\/td><\/tr>/g)) out[m[1]] = m[2];
        break;
      case 'application/vnd.ogc.gml':
      case 'text/xml': {
        // MapServer's GML: msGMLOutput / {layer}_layer / {layer}_feature, a gml:Point at x,y in EPSG:3857
        const root = gmlParser.parse(body).msGMLOutput;
        expect(root['@xmlns:gml']).toBe('http://www.opengis.net/gml');
        const layerEl = Object.keys(root).find((k) => k.endsWith('_layer'))!;
        const feature = root[layerEl][layerEl.replace(/_layer$/, '_feature')];
        expect(root[layerEl]['gml:name']).toBe(feature.layer);
        const point = feature.geometry['gml:Point'];
        expect(point['@srsName']).toBe('EPSG:3857');
        expect(point['gml:coordinates']).toBe(`${feature.x},${feature.y}`);
        for (const [k, v] of Object.entries(feature)) if (k !== 'geometry' && k !== 'gml:boundedBy' && !k.startsWith('band_')) out[k] = String(v);
        String(feature.values).split(' ').filter(Boolean).forEach((v, b) => expect(String(feature[`band_${b + 1}`])).toBe(v));
        break;
      }
      default:
        for (const line of body.trim().split('\n')) {
          const [k, ...v] = line.split(' = ');
          out[k] = v.join(' = ');
        }
    }
    return out;
  }

  async function pixelsOf(layer: string, z: number, x: number, y: number, ext: string): Promise<RawTile> {
    return decodeTile((await bytes(`/tiles/${layer}/${z}/${x}/${y}.${ext}`)).body);
  }

  it('answers the pixel decoded from the tile, in the four formats, KVP and RESTful', async () => {
    for (const [layer, desc, ext] of [
      ['north', northDesc, 'png'],
      ['miriam', miriamDesc, 'jpg'],
    ] as const) {
      const z = desc.bottom;
      const t = await dataTile(layer, desc, z, ext);
      const img = await pixelsOf(layer, z, t.x, t.y, ext);
      // the first and the last pixel with data: I counts columns, J rows
      const first = img.alpha.indexOf(255);
      const last = img.alpha.lastIndexOf(255);
      expect(first).toBeGreaterThanOrEqual(0);
      expect(last).toBeGreaterThan(first);
      for (const [i, j] of [first, last].map((k) => [k % 256, Math.floor(k / 256)])) {
        const k = j * 256 + i;
        const values = Array.from(img.data.subarray(k * img.bands, (k + 1) * img.bands)).join(' ');
        const b = tileBounds(PM, { z, x: t.x, y: t.y });
        const res = PM.levels[z].resolution;
        const [lon, lat] = mercatorToLonLat(b.minX + (i + 0.5) * res, b.maxY - (j + 0.5) * res);
        for (const [mime, iext] of FORMATS) {
          for (const path of [kvpInfo(layer, z, t.y, t.x, i, j, mime), `/wmts/1.0.0/${layer}/normal/PM/${z}/${t.y}/${t.x}/${j}/${i}.${iext}`]) {
            const info = await readInfo(path, mime);
            expect(info, path).toMatchObject({
              layer,
              tilematrixset: 'PM',
              tilematrix: String(z),
              row: String(t.y),
              col: String(t.x),
              i: String(i),
              j: String(j),
              values,
              alpha: '255',
              nodata: 'false',
            });
            expect(Number(info.lon)).toBeCloseTo(lon, 6);
            expect(Number(info.lat)).toBeCloseTo(lat, 6);
          }
        }
      }
    }
  });

  it('accepts the FORMAT parameter of the tile, and answers nodata for a blank tile', async () => {
    const t = await dataTile('north', northDesc, 6, 'png');
    const withFormat = await readInfo(kvpInfo('north', 6, t.y, t.x, 0, 0, 'application/json', '&FORMAT=image%2Fpng'), 'application/json');
    expect(withFormat.layer).toBe('north');
    const layer = srv.ctx.holder.current.get('north')!;
    const l7 = limitsOf(northDesc, 7);
    let blank: { x: number; y: number } | undefined;
    for (let y = l7.minY; y <= l7.maxY && !blank; y++) for (let x = l7.minX; x <= l7.maxX && !blank; x++) if (!layer.chain.locate({ z: 7, x, y })) blank = { x, y };
    for (const [mime] of FORMATS) {
      const info = await readInfo(kvpInfo('north', 7, blank!.y, blank!.x, 10, 20, mime), mime);
      expect(info, mime).toMatchObject({ values: '', alpha: '0', nodata: 'true' });
    }
  });

  it('writes header names in their usual case: QGIS 3.22 looks Content-Type up verbatim to tell GeoJSON from GML', async () => {
    const t = await dataTile('north', northDesc, 6, 'png');
    for (const path of [kvpInfo('north', 6, t.y, t.x, 1, 2, 'application/json'), `/wmts/1.0.0/north/normal/PM/6/${t.y}/${t.x}/2/1.json`, kvpInfo('north', 6, t.y, t.x, 999, 2, 'application/json')]) {
      const names = await new Promise<string[]>((resolve, reject) => {
        get(srv.url + path, (res) => {
          res.resume();
          resolve(res.rawHeaders.filter((_, k) => k % 2 === 0));
        }).on('error', reject);
      });
      expect(names, path).toContain('Content-Type');
      expect(names, path).toContain('Access-Control-Allow-Origin');
      expect(names.filter((n) => n === n.toLowerCase()), path).toEqual([]);
    }
  });

  it('escapes what it echoes in html and xml', async () => {
    // layer names cannot hold specials (LAYER_NAME), so the renderer is fed one directly
    const evil = `<b>"Tom" & 'Jerry'</b>`;
    const info = { layer: evil, tilematrixset: 'PM', tilematrix: '6', row: 1, col: 2, i: 3, j: 4, x: 5, y: 6, values: [7, 8, 9], alpha: 255, nodata: false };
    for (const f of [...INFO_FORMATS, ...EXTRA_INFO_FORMATS]) {
      const body = await renderFeatureInfo(info, f).text();
      if (f.mime === 'application/json') expect(JSON.parse(body).features[0].properties.layer).toBe(evil);
      else if (f.mime === 'text/plain') expect(body).toContain(`layer = ${evil}`);
      else {
        expect(body, f.mime).not.toContain('<b>');
        expect(body, f.mime).toContain('&lt;b&gt;');
      }
      if (f.mime.includes('xml') || f.mime.includes('gml')) {
        const layerEl = gmlParser.parse(body).msGMLOutput;
        const name = Object.keys(layerEl).find((k) => k.endsWith('_layer'))!;
        // the element names are made XML-safe; the name itself is kept, escaped, in gml:name
        expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_.-]*$/);
        expect(layerEl[name]['gml:name']).toBe(evil);
      }
      if (f.mime === 'text/html') expect(body).toContain('<tr><th>values</th><td>7 8 9</td></tr>');
    }
    // and the exception path echoes the request's layer escaped
    const e = await owsError(kvpInfo('<b>x</b>', 6, 0, 0, 0, 0, 'text/html'));
    expect(e.raw).not.toContain('<b>');
    expect(e.text).toContain('<b>x</b>');
  });

  it('gives bad requests their exceptionCode, locator and status', async () => {
    const l6 = limitsOf(northDesc, 6);
    const { minY: r, minX: c } = l6;
    const cases: [string, string, string, number][] = [
      [kvpInfo('north', 6, r, c, 256, 0, 'text/plain'), 'PointIJOutOfRange', 'I', 400],
      [kvpInfo('north', 6, r, c, -1, 0, 'text/plain'), 'PointIJOutOfRange', 'I', 400],
      [kvpInfo('north', 6, r, c, 0, 256, 'text/plain'), 'PointIJOutOfRange', 'J', 400],
      [kvpInfo('north', 6, r, c, 'x', 0, 'text/plain'), 'InvalidParameterValue', 'I', 400],
      [kvpInfo('north', 6, r, c, 0, 0, 'application/pdf'), 'InvalidParameterValue', 'INFOFORMAT', 400],
      [kvpInfo('north', 6, r, c, 0, 0, 'text/plain').replace(/&INFOFORMAT=[^&]*/, ''), 'MissingParameterValue', 'INFOFORMAT', 400],
      [kvpInfo('north', 6, r, c, 0, 0, 'text/plain').replace(/&I=0/, ''), 'MissingParameterValue', 'I', 400],
      [kvpInfo('north', 6, r, c, 0, 0, 'text/plain').replace(/&J=0/, ''), 'MissingParameterValue', 'J', 400],
      [kvpInfo('north', 6, r, c, 0, 0, 'text/plain', '&FORMAT=image%2Fjpeg'), 'InvalidParameterValue', 'FORMAT', 400],
      [kvpInfo('north', 6, l6.maxY + 1, c, 0, 0, 'text/plain'), 'TileOutOfRange', 'TILEROW', 400],
      [kvpInfo('north', 6, r, l6.maxX + 1, 0, 0, 'text/plain'), 'TileOutOfRange', 'TILECOL', 400],
      // a layer without GetFeatureInfo offers no InfoFormat: any value is invalid (07-057r7 7.3.2.3)
      [kvpInfo('specials', 6, r, c, 0, 0, 'text/plain'), 'InvalidParameterValue', 'INFOFORMAT', 400],
      [`/wmts/1.0.0/specials/normal/PM/6/${r}/${c}/0/0.txt`, 'InvalidParameterValue', 'INFOFORMAT', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${r}/${c}/0/0.pdf`, 'InvalidParameterValue', 'INFOFORMAT', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${r}/${c}/0/300.txt`, 'PointIJOutOfRange', 'I', 400],
      [`/wmts/1.0.0/north/normal/PM/6/${r}/${c}/300/0.txt`, 'PointIJOutOfRange', 'J', 400],
    ];
    for (const [path, code, locator, status] of cases) {
      const e = await owsError(path);
      expect([e.code, e.locator, e.status], path).toEqual([code, locator, status]);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// GDAL's WMTS driver as the client: it reads the capabilities, picks the deepest TileMatrix as the full
// resolution, clips to TileMatrixSetLimits, fetches tiles through the ResourceURL template and
// GetFeatureInfo through the FeatureInfo one. Missing GDAL fails only when TUILE_REQUIRE_GDAL=1 (CI).

async function hasGdal(): Promise<boolean> {
  try {
    await run('gdalinfo', ['--version']);
    await run('gdal_translate', ['--version']);
    await run('gdallocationinfo', ['--version']);
    return true;
  } catch {
    return false;
  }
}

describe('GDAL WMTS driver', () => {
  let gdal = false;
  let work: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    gdal = await hasGdal();
    work = mkdtempSync(join(tmpdir(), 'tuile-wmts-gdal-'));
    // the driver's tile cache goes to a folder of ours; no proxy between GDAL and 127.0.0.1
    env = { ...process.env, GDAL_DEFAULT_WMS_CACHE_PATH: join(work, 'cache'), NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', GDAL_HTTP_TIMEOUT: '30' };
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function skipped(): boolean {
    if (gdal) return false;
    expect(process.env.TUILE_REQUIRE_GDAL, 'GDAL (gdalinfo, gdal_translate, gdallocationinfo) is required: TUILE_REQUIRE_GDAL=1').not.toBe('1');
    console.warn('wmts.test: gdalinfo, gdal_translate or gdallocationinfo not found: the GDAL client checks did NOT run');
    return true;
  }

  async function gdalJson(ds: string): Promise<Json> {
    const { stdout } = await run('gdalinfo', ['-json', ds], { env, maxBuffer: 64 << 20 });
    return JSON.parse(stdout);
  }

  /** The layer's box as the capabilities advertise it (the registry's, which the test above checks). */
  function advertised(desc: PyramidDescriptor): Bbox {
    return [...srv.ctx.holder.current.layers.values()].find((l) => l.chain.descriptor.id === desc.id)!.bbox;
  }

  /** The geotransform GDAL derives from the layer's BoundingBox at the resolution of tile matrix z. */
  function expectedGeo(desc: PyramidDescriptor, z: number): { gt: number[]; size: [number, number] } {
    const res = PM.levels[z].resolution;
    const b = advertised(desc);
    const x0 = PM.originX + Math.floor((b.minX - PM.originX) / res + 1e-10) * res;
    const y0 = PM.originY + Math.ceil((b.maxY - PM.originY) / res - 1e-10) * res;
    return { gt: [x0, res, 0, y0, 0, -res], size: [Math.floor(0.5 + (b.maxX - x0) / res), Math.floor(0.5 + (y0 - b.minY) / res)] };
  }

  it('lists the layers of the RESTful and KVP capabilities, with the size and georeferencing of the deepest level', async () => {
    if (skipped()) return;
    for (const caps of [`${srv.url}/wmts/1.0.0/WMTSCapabilities.xml`, `${srv.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`]) {
      const all = await gdalJson(`WMTS:${caps}`);
      const sub = all.metadata.SUBDATASETS;
      const listed = Object.keys(sub).filter((k) => k.endsWith('_NAME')).map((k) => sub[k]);
      expect(listed).toEqual(['miriam', 'north', 'specials'].map((l) => `WMTS:${caps},layer=${l}`));
      expect(Object.values(sub)).toContain(`Layer ${SPECIAL_TITLE}`);

      // north goes deepest: GDAL's full resolution is its bottom level
      const north = await gdalJson(`WMTS:${caps},layer=north`);
      const want = expectedGeo(northDesc, northDesc.bottom);
      expect(north.size).toEqual(want.size);
      north.geoTransform.forEach((v: number, k: number) => expect(v).toBeCloseTo(want.gt[k], 6));
      expect(north.coordinateSystem.wkt).toContain('Pseudo-Mercator');
      expect(north.bands).toHaveLength(4);
      expect(north.metadata[''].TITLE).toBe('North relief');
      // one GDAL overview per coarser tile matrix while it stays 128 pixels or more
      expect(north.bands[0].overviews.length).toBeGreaterThan(0);

      // miriam stops above the set's deepest level: ask for its own with tilematrix=
      const miriam = await gdalJson(`WMTS:${caps},layer=miriam,tilematrix=${miriamDesc.bottom}`);
      const wantM = expectedGeo(miriamDesc, miriamDesc.bottom);
      expect(miriam.size).toEqual(wantM.size);
      miriam.geoTransform.forEach((v: number, k: number) => expect(v).toBeCloseTo(wantM.gt[k], 6));
    }
  });

  async function translate(ds: string, z: number, x: number, y: number, n: number, out: number, name: string): Promise<RawTile> {
    // a window of n x n tiles of level z, from the top-left corner of tile (x, y)
    const tl = tileBounds(PM, { z, x, y });
    const br = tileBounds(PM, { z, x: x + n - 1, y: y + n - 1 });
    const file = join(work, name);
    await run('gdal_translate', ['-q', '-of', 'PNG', '-projwin', String(tl.minX), String(tl.maxY), String(br.maxX), String(br.minY), '-outsize', String(out), String(out), ds, file], { env });
    return decodeTile(await sharp(file).toBuffer());
  }

  async function block(layer: string, z: number, x: number, y: number, mime: string): Promise<RawTile> {
    const tiles: RawTile[] = [];
    for (const [dx, dy] of [
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
    ]) {
      const r = await bytes(kvpTile(layer, z, y + dy, x + dx, mime));
      expect(r.status).toBe(200);
      tiles.push(await decodeTile(r.body));
    }
    return assemble(tiles);
  }

  /** A 2x2 block inside the level's limits whose top-left tile holds data, at even indices when asked. */
  function blockAt(layer: string, desc: PyramidDescriptor, z: number, even: boolean): { x: number; y: number } {
    const chain = srv.ctx.holder.current.get(layer)!.chain;
    const l = limitsOf(desc, z);
    for (let y = l.minY; y < l.maxY; y++) {
      for (let x = l.minX; x < l.maxX; x++) {
        if (even && (x % 2 !== 0 || y % 2 !== 0)) continue;
        if (chain.locate({ z, x, y }) && chain.locate({ z, x: x + 1, y: y + 1 })) return { x, y };
      }
    }
    throw new Error(`no 2x2 block with data at level ${z}`);
  }

  /**
   * Pixels of a translated window whose centre lies inside the layer's extent (GDAL's raster is the
   * BoundingBox, not whole tiles), two output pixels in from its edge.
   */
  function insideLayer(desc: PyramidDescriptor, z: number, x: number, y: number, n: number, out: number): (px: number, py: number) => boolean {
    const tl = tileBounds(PM, { z, x, y });
    const res = (n * 256 * PM.levels[z].resolution) / out;
    const b = advertised(desc);
    return (px, py) => {
      const cx = tl.minX + (px + 0.5) * res;
      const cy = tl.maxY - (py + 0.5) * res;
      return cx > b.minX + 2 * res && cx < b.maxX - 2 * res && cy > b.minY + 2 * res && cy < b.maxY - 2 * res;
    };
  }

  it('gdal_translate copies the tiles GetTile serves', async () => {
    if (skipped()) return;
    const caps = `${srv.url}/wmts/1.0.0/WMTSCapabilities.xml`;
    // png, full resolution: GDAL copies the tiles, so the pixels are the same
    const z = northDesc.bottom;
    const at = blockAt('north', northDesc, z, false);
    const got = await translate(`WMTS:${caps},layer=north`, z, at.x, at.y, 2, 512, 'north.png');
    const want = await block('north', z, at.x, at.y, 'image/png');
    const c = compare(got, want, insideLayer(northDesc, z, at.x, at.y, 2, 512));
    expect(c.compared).toBeGreaterThan(10_000);
    expect(c.maskMismatch).toBe(0);
    expect(c.identical).toBe(1);

    // half the resolution: GDAL reads the overview made of the next tile matrix up, the parent tile
    const even = blockAt('north', northDesc, z, true);
    const half = await translate(`WMTS:${caps},layer=north`, z, even.x, even.y, 2, 256, 'north-half.png');
    const parent = await decodeTile((await bytes(kvpTile('north', z - 1, even.y / 2, even.x / 2))).body);
    const ch = compare(half, parent, insideLayer(northDesc, z, even.x, even.y, 2, 256));
    expect(ch.compared).toBeGreaterThan(5_000);
    expect(ch.maskMismatch).toBe(0);
    expect(ch.identical).toBe(1);

    // jpeg, through the KVP capabilities: two JPEG decoders, compared by PSNR
    const mz = miriamDesc.bottom;
    const m = blockAt('miriam', miriamDesc, mz, false);
    const gotM = await translate(`WMTS:${srv.url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer=miriam,tilematrix=${mz}`, mz, m.x, m.y, 2, 512, 'miriam.png');
    const wantM = await block('miriam', mz, m.x, m.y, 'image/jpeg');
    const cm = compare(gotM, wantM, insideLayer(miriamDesc, mz, m.x, m.y, 2, 512));
    expect(cm.compared).toBeGreaterThan(10_000);
    expect(cm.maskMismatch).toBe(0);
    expect(cm.psnr).toBeGreaterThan(45);
  });

  it('gdallocationinfo reads GetFeatureInfo through the FeatureInfo template', async () => {
    if (skipped()) return;
    const z = northDesc.bottom;
    const t = await dataTile('north', northDesc, z, 'png');
    const b = tileBounds(PM, { z, x: t.x, y: t.y });
    const res = PM.levels[z].resolution;
    const img = await decodeTile((await bytes(kvpTile('north', z, t.y, t.x))).body);
    const k = img.alpha.indexOf(255);
    const [i, j] = [k % 256, Math.floor(k / 256)];
    const { stdout } = await run(
      'gdallocationinfo',
      ['-xml', '-b', '1', '-geoloc', `WMTS:${srv.url}/wmts/1.0.0/WMTSCapabilities.xml,layer=north`, String(b.minX + (i + 0.5) * res), String(b.maxY - (j + 0.5) * res)],
      { env },
    );
    const report = parser.parse(stdout).Report.BandReport;
    const info = Object.fromEntries(
      String(report.LocationInfo)
        .trim()
        .split('\n')
        .map((l) => l.split(' = ')),
    );
    expect(info).toMatchObject({ layer: 'north', tilematrix: String(z), row: String(t.y), col: String(t.x), i: String(i), j: String(j), values: String(img.data[k * img.bands]) });
    expect(String(report.Value)).toBe(String(img.data[k * img.bands]));
  });
});
