// Draws a tuile layer with the library the query names, on an exact view, and reports in window.interop:
// { done, error, tiles (loaded), tileErrors, version }. run.mjs screenshots #map once done.
import * as maplibregl from '/node_modules/maplibre-gl/dist/maplibre-gl.mjs';

const q = new URLSearchParams(location.search);
const client = q.get('client');
const tuile = q.get('tuile'); // the server's base URL (another origin: CORS is part of the test)
const layer = q.get('layer');
const x0 = Number(q.get('x0'));
const y1 = Number(q.get('y1'));
const res = Number(q.get('res'));
const w = Number(q.get('w'));
const h = Number(q.get('h'));
const z = Number(q.get('z')); // the view's level
const bottom = Number(q.get('bottom')); // the layer's deepest level
const R = 6378137;
const state = (window.interop = { done: false, error: null, tiles: 0, tileErrors: 0, version: '' });
const el = document.getElementById('map');
el.style.width = `${w}px`;
el.style.height = `${h}px`;

const cx = x0 + (w / 2) * res;
const cy = y1 - (h / 2) * res;
const lon = (cx / R) * (180 / Math.PI);
const lat = (2 * Math.atan(Math.exp(cy / R)) - Math.PI / 2) * (180 / Math.PI);
const fail = (e) => {
  state.error = String(e && e.message ? e.message : e);
  state.done = true;
};

async function olWmts() {
  state.version = ol.util.VERSION;
  const text = await (await fetch(`${tuile}/wmts/1.0.0/WMTSCapabilities.xml`)).text();
  const caps = new ol.format.WMTSCapabilities().read(text);
  const options = ol.source.WMTS.optionsFromCapabilities(caps, { layer, matrixSet: 'PM' });
  const source = new ol.source.WMTS({ ...options, crossOrigin: 'anonymous', transition: 0 });
  source.on('tileloadend', () => state.tiles++);
  source.on('tileloaderror', () => state.tileErrors++);
  const map = new ol.Map({
    target: el,
    pixelRatio: 1,
    controls: [],
    layers: [new ol.layer.Tile({ source, extent: options.tileGrid.getExtent() })],
    view: new ol.View({ center: [cx, cy], resolution: res }),
  });
  map.once('rendercomplete', () => (state.done = true));
}

function leaflet(tms) {
  state.version = L.version;
  const map = L.map(el, { zoomControl: false, attributionControl: false, fadeAnimation: false, zoomAnimation: false, inertia: false });
  const url = tms ? `${tuile}/tms/1.0.0/${layer}/{z}/{x}/{y}.png` : `${tuile}/tiles/${layer}/{z}/{x}/{y}.png`;
  // bounds from the WMTS capabilities' WGS84 box: Leaflet asks only for tiles under it
  const t = L.tileLayer(url, { tms, crossOrigin: 'anonymous', minZoom: 0, maxZoom: bottom, bounds: L.latLngBounds(bounds.sw, bounds.ne) });
  t.on('tileload', () => state.tiles++);
  t.on('tileerror', () => state.tileErrors++);
  t.on('load', () => (state.done = true));
  t.addTo(map);
  map.setView([lat, lon], z, { animate: false });
}

function maplibre(pmtilesUrl) {
  state.version = maplibregl.getVersion();
  let source;
  if (pmtilesUrl) {
    const protocol = new pmtiles.Protocol();
    maplibregl.addProtocol('pmtiles', protocol.tile);
    source = { type: 'raster', url: `pmtiles://${pmtilesUrl}`, tileSize: 256 };
  } else {
    source = { type: 'raster', tiles: [`${tuile}/tiles/${layer}/{z}/{x}/{y}.png`], tileSize: 256, minzoom: 0, maxzoom: bottom, bounds: [bounds.sw[1], bounds.sw[0], bounds.ne[1], bounds.ne[0]] };
  }
  const map = new maplibregl.Map({
    container: el,
    pixelRatio: 1,
    attributionControl: false,
    fadeDuration: 0,
    style: { version: 8, sources: { t: source }, layers: [{ id: 'bg', type: 'background', paint: { 'background-color': '#ffffff' } }, { id: 't', type: 'raster', source: 't', paint: { 'raster-fade-duration': 0, 'raster-resampling': 'nearest' } }] },
    // MapLibre's zoom counts 512-pixel worlds: 256-pixel tiles of level z show 1:1 at zoom z - 1
    center: [lon, lat],
    zoom: z - 1,
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  map.on('data', (e) => {
    if (e.dataType === 'source' && e.tile) state.tiles++;
  });
  map.on('error', (e) => {
    state.tileErrors++;
    state.error = String(e.error && e.error.message ? e.error.message : e.error);
  });
  map.once('idle', () => (state.done = true));
}

let bounds;
(async () => {
  // the layer's box, from the capabilities every client could read
  const text = await (await fetch(`${tuile}/wmts/1.0.0/WMTSCapabilities.xml`)).text();
  const doc = new DOMParser().parseFromString(text, 'application/xml');
  const l = [...doc.getElementsByTagName('Layer')].find((n) => n.getElementsByTagName('ows:Identifier')[0].textContent === layer);
  const wgs = l.getElementsByTagName('ows:WGS84BoundingBox')[0];
  const [west, south] = wgs.getElementsByTagName('ows:LowerCorner')[0].textContent.split(' ').map(Number);
  const [east, north] = wgs.getElementsByTagName('ows:UpperCorner')[0].textContent.split(' ').map(Number);
  bounds = { sw: [south, west], ne: [north, east] };
  if (client === 'ol-wmts') await olWmts();
  else if (client === 'leaflet-xyz') leaflet(false);
  else if (client === 'leaflet-tms') leaflet(true);
  else if (client === 'maplibre-xyz') maplibre(null);
  else if (client === 'maplibre-pmtiles') maplibre(q.get('pmtiles'));
  else throw new Error(`unknown client ${client}`);
})().catch(fail);
