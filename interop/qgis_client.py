"""PyQGIS as a tuile client (run by interop/run.mjs under xvfb-run): opens the layer from the RESTful and
KVP WMTS capabilities and as XYZ, renders each on the view, and identifies a point in feature and text
modes. Prints one JSON report on stdout; every failure is a report entry, never an exception."""
import json
import sys
import traceback
from urllib.parse import quote

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsMapRendererSequentialJob, QgsMapSettings,
                       QgsPointXY, QgsRaster, QgsRasterLayer, QgsRectangle)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

args = json.loads(sys.argv[1])
base, layer, out = args['base'], args['layer'], args['out']
box = QgsRectangle(args['x0'], args['y0'], args['x1'], args['y1'])
w, h = args['w'], args['h']

app = QgsApplication([], False)
app.initQgis()
report = {'version': Qgis.QGIS_VERSION, 'layers': {}, 'identify': {}}


def wmts_uri(caps):
    return f"crs=EPSG:3857&dpiMode=7&format=image/png&layers={layer}&styles=normal&tileMatrixSet=PM&url={caps}"


sources = {
    'wmts-rest': wmts_uri(f"{base}/wmts/1.0.0/WMTSCapabilities.xml"),
    'wmts-kvp': wmts_uri(quote(f"{base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", safe='')),
    'xyz': f"type=xyz&url={quote(f'{base}/tiles/{layer}/{{z}}/{{x}}/{{y}}.png', safe='')}&zmin=0&zmax={args['z']}&crs=EPSG:3857",
}

opened = {}
for name, uri in sources.items():
    entry = report['layers'][name] = {'uri': uri}
    try:
        rl = QgsRasterLayer(uri, f"{layer} {name}", 'wms')
        entry['valid'] = rl.isValid()
        if not rl.isValid():
            entry['error'] = rl.error().summary()
            continue
        e = rl.extent()
        entry['extent'] = [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()]
        entry['renders'] = {}
        entry['renderErrors'] = []
        for view in [{'name': 'view', 'x0': args['x0'], 'y0': args['y0'], 'x1': args['x1'], 'y1': args['y1']}] + args.get('views', []):
            settings = QgsMapSettings()
            settings.setLayers([rl])
            settings.setDestinationCrs(QgsCoordinateReferenceSystem('EPSG:3857'))
            settings.setExtent(QgsRectangle(view['x0'], view['y0'], view['x1'], view['y1']))
            settings.setOutputSize(QSize(w, h))
            settings.setOutputDpi(96)
            settings.setBackgroundColor(QColor(255, 255, 255))
            job = QgsMapRendererSequentialJob(settings)
            job.start()
            job.waitForFinished()
            png = f"{out}/qgis-{name}-{view['name'].replace(' ', '-')}.png"
            job.renderedImage().save(png)
            entry['renders'][view['name']] = png
            entry['renderErrors'] += [f"{x.layerID}: {x.message}" for x in job.errors()]
        opened[name] = rl
    except Exception:  # noqa: BLE001 - the report says what failed
        entry['error'] = traceback.format_exc()

# Identify on the RESTful WMTS layer, at a pixel centre of the view
rl = opened.get('wmts-rest')
if rl is not None:
    pt = QgsPointXY(args['px'], args['py'])
    for mode, fmt in (('feature', QgsRaster.IdentifyFormatFeature), ('text', QgsRaster.IdentifyFormatText), ('html', QgsRaster.IdentifyFormatHtml)):
        entry = report['identify'][mode] = {}
        try:
            r = rl.dataProvider().identify(pt, fmt, box, w, h)
            entry['valid'] = r.isValid()
            if not r.isValid():
                entry['error'] = r.error().summary()
                continue
            values = []
            for v in r.results().values():
                if mode == 'feature':
                    for store in v:
                        for f in store.features():
                            values.append({k.name(): (None if f[k.name()] is None else str(f[k.name()])) for k in f.fields()}
                                          | {'_geometry': f.geometry().asWkt(3)})
                else:
                    values.append(str(v))
            entry['results'] = values
        except Exception:  # noqa: BLE001
            entry['error'] = traceback.format_exc()


# Each feature format alone: QGIS keeps one feature format per layer (the last listed), so the
# capabilities are served again from here with only GeoJSON, then only GML, among the InfoFormats.
def only(fmt, text):
    keep = []
    for line in text.splitlines():
        if ('<InfoFormat>' in line or 'resourceType="FeatureInfo"' in line) and ('application/json' in line or 'application/vnd.ogc.gml' in line) and fmt not in line:
            continue
        keep.append(line)
    return '\n'.join(keep).encode()


try:
    import http.server
    import threading
    import urllib.request
    caps_text = urllib.request.urlopen(f"{base}/wmts/1.0.0/WMTSCapabilities.xml").read().decode()
    variants = {'/geojson.xml': only('application/json', caps_text), '/gml.xml': only('application/vnd.ogc.gml', caps_text)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = variants.get(self.path.split('?')[0])
            self.send_response(200 if body else 404)
            self.send_header('Content-Type', 'application/xml')
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for name, path in (('feature-geojson', '/geojson.xml'), ('feature-gml', '/gml.xml')):
        entry = report['identify'][name] = {}
        try:
            rl = QgsRasterLayer(wmts_uri(f"http://127.0.0.1:{httpd.server_address[1]}{path}"), f"{layer} {name}", 'wms')
            if not rl.isValid():
                entry['error'] = rl.error().summary()
                continue
            r = rl.dataProvider().identify(QgsPointXY(args['px'], args['py']), QgsRaster.IdentifyFormatFeature, box, w, h)
            entry['valid'] = r.isValid()
            values = []
            for v in r.results().values():
                for store in v:
                    for f in store.features():
                        values.append({k.name(): (None if f[k.name()] is None else str(f[k.name()])) for k in f.fields()}
                                      | {'_geometry': f.geometry().asWkt(3)})
            entry['results'] = values
        except Exception:  # noqa: BLE001
            entry['error'] = traceback.format_exc()
    httpd.shutdown()
except Exception:  # noqa: BLE001
    report['identify']['variants-error'] = traceback.format_exc()

print(json.dumps(report))
app.exitQgis()
